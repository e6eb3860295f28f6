//! The shard engine: finding and reading input shards (JSONL, JSONL.gz, JSONL.zst, Parquet,
//! trees of `.py` files), writing output shards atomically, and the per-stage manifest.

pub mod manifest;
pub mod merge;
pub mod ordered;
pub mod ranks;
pub mod reader;
pub mod resume;
pub mod stream;
pub mod writer;

pub use manifest::Manifest;
pub use reader::{expand_corpus, expand_inputs, CorpusFormat, InputFile, InputFormat, SourceDoc, SourceFields};
pub use writer::{ShardInfo, ShardWriter, ShardWriterOptions};
