//! The response cache: one SQLite file, one row per (prompt, sampling settings, sample
//! index). SQLite in WAL mode because every completed answer is committed on its own, so
//! a `kill -9` loses at most the answer being written and never corrupts earlier ones; and
//! several processes (e.g. Slurm array tasks on one machine) can share the file safely —
//! writers serialise on SQLite's lock with a busy timeout. (Keep it on a local disk: SQLite
//! locking over NFS is unreliable.) An append-only log would need its own recovery and
//! compaction; SQLite gives both, plus indexed lookups without loading the cache into memory.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedChoice {
    pub text: String,
    pub finish_reason: Option<String>,
}

pub struct ResponseCache {
    conn: Mutex<Connection>,
}

impl ResponseCache {
    pub fn open(path: &Path) -> Result<ResponseCache> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open LLM cache {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS responses (
                key TEXT PRIMARY KEY,
                model TEXT NOT NULL,
                text TEXT NOT NULL,
                finish_reason TEXT,
                created REAL NOT NULL
            );",
        )
        .with_context(|| format!("LLM cache {} is not usable", path.display()))?;
        Ok(ResponseCache { conn: Mutex::new(conn) })
    }

    pub fn get(&self, key: &str) -> Result<Option<CachedChoice>> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("cache lock poisoned"))?;
        let row = conn
            .query_row("SELECT text, finish_reason FROM responses WHERE key = ?1", params![key], |r| {
                Ok(CachedChoice { text: r.get(0)?, finish_reason: r.get(1)? })
            })
            .optional()?;
        Ok(row)
    }

    pub fn put(&self, key: &str, model: &str, choice: &CachedChoice) -> Result<()> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("cache lock poisoned"))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        conn.execute(
            "INSERT OR REPLACE INTO responses (key, model, text, finish_reason, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, model, choice.text, choice.finish_reason, now],
        )?;
        Ok(())
    }

    pub fn len(&self) -> Result<u64> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("cache lock poisoned"))?;
        Ok(conn.query_row("SELECT COUNT(*) FROM responses", [], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let c = ResponseCache::open(&path).unwrap();
            assert!(c.get("k").unwrap().is_none());
            c.put("k", "m", &CachedChoice { text: "hello".into(), finish_reason: Some("stop".into()) }).unwrap();
        }
        let c = ResponseCache::open(&path).unwrap();
        assert_eq!(c.get("k").unwrap().unwrap().text, "hello");
        assert_eq!(c.len().unwrap(), 1);
    }
}
