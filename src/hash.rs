//! Content hashes for ids (a leaf module: every layer may use it).

/// Hex content hash used for record ids: blake3, first 16 bytes.
pub fn content_id(text: &str) -> String {
    let hash = blake3::hash(text.as_bytes());
    hash.to_hex()[..32].to_string()
}
