//! Packs compiled into the binary.
//!
//! The kernel knows no particular pack; the `lumenflow-packs` crate hands it these values. An
//! embedded pack is hashed and validated exactly like the same folder on disk.

/// One pack folder embedded with `include_bytes!`: every file, by its `/`-separated path relative to
/// the pack root.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPack {
    pub id: &'static str,
    pub files: &'static [(&'static str, &'static [u8])],
}

impl EmbeddedPack {
    /// The pack hash of these files: what a pin of this pack must carry, and what the loader
    /// compares it with (the same algorithm as for the folder on disk).
    pub fn hash(&self) -> crate::integrity::PackHash {
        crate::integrity::hash_files_in_memory(
            self.files.iter().copied(),
            crate::integrity::DEFAULT_EXCLUSIONS,
        )
    }
}
