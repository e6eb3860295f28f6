//! Content hashes for ids (a leaf module: every layer may use it).

/// Hex content hash used for record ids: blake3, first 16 bytes.
pub fn content_id(text: &str) -> String {
    let hash = blake3::hash(text.as_bytes());
    hash.to_hex()[..32].to_string()
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable share of `world` for a hex key (the rank that owns it).
pub fn owner(key: &str, world: usize) -> usize {
    let head = key.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or_else(|| {
        let h = blake3::hash(key.as_bytes());
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
    });
    (head % world.max(1) as u64) as usize
}
