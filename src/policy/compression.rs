//! The compression policy: gzip values from a size threshold, inflate with a hard cap.
//!
//! mognet gzips every value; its readers accept both gzip and plain contents, so resultd keeps
//! small values plain (gzip makes a 44-byte holder 61 bytes) and gzips the rest. Inflation is
//! always bounded by `max_inflated_bytes`, which is what stops a gzip bomb: the stream is
//! inflated a chunk at a time and refused the moment its output passes the cap, so a job holds
//! at most the cap plus one chunk.
//!
//! Gzip and inflation are CPU-bound. Small jobs run where they are asked for; a compression of
//! more than [`INLINE_BYTES`] of input, or an inflation still producing output after
//! [`INLINE_BYTES`], moves to tokio's blocking pool so that it never holds an async worker.
//! At most `compression.blocking_jobs` such jobs run at once; the others wait their turn
//! without holding a thread.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use tokio::sync::Semaphore;

use crate::config::CompressionSettings;

/// Work (input bytes to gzip, output bytes inflated) done in place before a job moves to the
/// blocking pool.
pub const INLINE_BYTES: usize = 64 << 10;

/// Bytes the holder may add around an accepted value.
///
/// That is `{"value_type":…,"raw_value":…}`, or the fields of an exception record. A stored
/// holder may inflate to `max_inflated_bytes` plus this, so every value accepted at the cap
/// reads back.
pub const HOLDER_OVERHEAD_BYTES: usize = 1024;

/// Output read from the decoder at a time.
const CHUNK_BYTES: usize = 16 << 10;

/// Why inflating a gzip stream failed.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    /// The stream inflates to more than the cap.
    #[error("inflated size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The bytes are not a valid gzip stream (or end before it does).
    #[error("not a valid gzip stream: {0}")]
    Invalid(io::Error),
    /// The blocking job did not finish (the runtime is shutting down).
    #[error("the inflation job did not finish: {0}")]
    Interrupted(String),
}

/// Why gzipping a value failed.
#[derive(Debug, thiserror::Error)]
#[error("the compression job did not finish: {0}")]
pub struct CompressError(String);

/// When and how values are compressed.
#[derive(Debug, Clone)]
pub struct CompressionPolicy {
    settings: CompressionSettings,
    blocking: Arc<Semaphore>,
}

impl CompressionPolicy {
    /// Builds the policy from settings (already validated).
    pub fn new(settings: CompressionSettings) -> Self {
        let blocking = Arc::new(Semaphore::new(settings.blocking_jobs.max(1)));
        Self { settings, blocking }
    }

    /// The largest size an uploaded value may have, after inflating a gzip upload.
    pub fn max_inflated_bytes(&self) -> usize {
        self.settings.max_inflated_bytes
    }

    /// The largest size a stored holder may inflate to: the value cap plus the holder's own
    /// bytes, so a value accepted at the cap is always readable.
    pub fn max_stored_bytes(&self) -> usize {
        self.settings.max_inflated_bytes.saturating_add(HOLDER_OVERHEAD_BYTES)
    }

    /// Whether a holder of `len` bytes is stored gzipped.
    pub fn should_compress(&self, len: usize) -> bool {
        self.settings.enabled && len >= self.settings.min_bytes
    }

    /// Gzips `data` at the configured level, on the blocking pool when it is large.
    pub async fn compress(&self, data: Bytes) -> Result<Vec<u8>, CompressError> {
        let level = Compression::new(u32::from(self.settings.level));
        if data.len() <= INLINE_BYTES {
            return gzip(&data, level).map_err(|e| CompressError(e.to_string()));
        }
        // The permit moves into the job: it is held until the job ends, even if the request
        // is dropped meanwhile.
        let permit = self.blocking.clone().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            gzip(&data, level)
        })
        .await
        .map_err(|e| CompressError(e.to_string()))?
        .map_err(|e| CompressError(e.to_string()))
    }

    /// Inflates an uploaded gzip body (one or more members), refusing output over
    /// `max_inflated_bytes`.
    pub async fn inflate(&self, data: Bytes) -> Result<Vec<u8>, InflateError> {
        self.inflate_capped(data, self.max_inflated_bytes()).await
    }

    /// Inflates a stored gzip holder, refusing output over [`Self::max_stored_bytes`].
    pub async fn inflate_stored(&self, data: Bytes) -> Result<Vec<u8>, InflateError> {
        self.inflate_capped(data, self.max_stored_bytes()).await
    }

    /// Inflates in place up to [`INLINE_BYTES`] of output, then finishes on the blocking pool.
    async fn inflate_capped(&self, data: Bytes, limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut job = BoundedInflater::new(data, limit)?;
        if job.run(Some(INLINE_BYTES))? {
            return Ok(job.finish());
        }
        let permit = self.blocking.clone().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job.run(None).map(|_| job.finish())
        })
        .await
        .map_err(|e| InflateError::Interrupted(e.to_string()))?
    }
}

fn gzip(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 32), level);
    encoder.write_all(data)?;
    encoder.finish()
}

/// Inflates `data` in the calling thread, failing once the output would exceed `limit` bytes.
pub fn inflate_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut job = BoundedInflater::new(Bytes::copy_from_slice(data), limit)?;
    job.run(None)?;
    Ok(job.finish())
}

/// A gzip stream being inflated chunk by chunk under a cap.
struct BoundedInflater {
    decoder: MultiGzDecoder<bytes::buf::Reader<Bytes>>,
    out: Vec<u8>,
    chunk: Box<[u8]>,
    limit: usize,
}

impl BoundedInflater {
    fn new(data: Bytes, limit: usize) -> Result<Self, InflateError> {
        if data.is_empty() {
            return Err(InflateError::Invalid(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "an empty body is not a gzip stream",
            )));
        }
        // A first guess at the size; growth past it is clamped to the cap.
        let initial = data.len().saturating_mul(4).min(limit).min(1 << 20);
        Ok(Self {
            decoder: MultiGzDecoder::new(data.reader()),
            out: Vec::with_capacity(initial),
            chunk: vec![0; CHUNK_BYTES].into_boxed_slice(),
            limit,
        })
    }

    /// Inflates until the stream ends (`Ok(true)`) or, with a budget, until that many more
    /// bytes came out (`Ok(false)`).
    fn run(&mut self, budget: Option<usize>) -> Result<bool, InflateError> {
        let mut produced = 0usize;
        loop {
            let n = match self.decoder.read(&mut self.chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InflateError::Invalid(e)),
            };
            let len = self.out.len();
            if n > self.limit - len {
                return Err(InflateError::TooLarge { limit: self.limit });
            }
            if self.out.capacity() - len < n {
                // Double, but never reserve past the cap.
                let target = (self.out.capacity().saturating_mul(2)).max(len + n).min(self.limit);
                self.out.reserve_exact(target - len);
            }
            self.out.extend_from_slice(&self.chunk[..n]);
            produced += n;
            if budget.is_some_and(|b| produced >= b) {
                return Ok(false);
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CompressionPolicy {
        CompressionPolicy::new(CompressionSettings::default())
    }

    fn gzipped(data: &[u8]) -> Vec<u8> {
        gzip(data, Compression::new(6)).unwrap()
    }

    #[tokio::test]
    async fn compressed_values_inflate_back() {
        let p = policy();
        let data = b"{\"value_type\":\"builtins:str\",\"raw_value\":\"aaaaaaaaaaaaaaaa\"}".repeat(20);
        let gz = p.compress(Bytes::from(data.clone())).await.unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(p.inflate(Bytes::from(gz)).await.unwrap(), data);
    }

    #[tokio::test]
    async fn large_jobs_round_trip_through_the_blocking_pool() {
        let p = policy();
        let data: Vec<u8> = (0..(3 * INLINE_BYTES as u32))
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = p.compress(Bytes::from(data.clone())).await.unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(p.inflate(Bytes::from(gz)).await.unwrap(), data);
    }

    #[tokio::test]
    async fn pythons_gzip_bytes_inflate() {
        // gzip.compress(b'{"value_type":"builtins:int","raw_value":42}') as mognet wrote it.
        let gz = [
            0x1f, 0x8b, 0x08, 0x00, 0xbf, 0x89, 0x03, 0x6b, 0x02, 0xff, 0xab, 0x56, 0x2a, 0x4b, 0xcc, 0x29, 0x4d, 0x8d,
            0x2f, 0xa9, 0x2c, 0x48, 0x55, 0xb2, 0x52, 0x4a, 0x2a, 0xcd, 0xcc, 0x29, 0xc9, 0xcc, 0x2b, 0xb6, 0xca, 0xcc,
            0x2b, 0x51, 0xd2, 0x51, 0x2a, 0x4a, 0x2c, 0x8f, 0x07, 0xcb, 0x2b, 0x59, 0x99, 0x18, 0xd5, 0x02, 0x00, 0x9a,
            0x29, 0xf4, 0x7f, 0x2c, 0x00, 0x00, 0x00,
        ];
        let out = policy().inflate(Bytes::copy_from_slice(&gz)).await.unwrap();
        assert_eq!(out, br#"{"value_type":"builtins:int","raw_value":42}"#);
    }

    #[tokio::test]
    async fn inflation_past_the_cap_is_refused() {
        let gz = gzipped(&[b'a'; 4096]);
        assert!(matches!(
            inflate_bounded(&gz, 1000),
            Err(InflateError::TooLarge { limit: 1000 })
        ));
        assert!(matches!(
            policy().inflate(Bytes::from_static(b"not gzip")).await,
            Err(InflateError::Invalid(_))
        ));
        assert!(matches!(
            policy().inflate(Bytes::new()).await,
            Err(InflateError::Invalid(_))
        ));
    }

    #[test]
    fn exactly_the_cap_inflates_and_one_byte_more_is_refused() {
        for size in [1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 5 * CHUNK_BYTES + 7] {
            let data = vec![b'x'; size];
            let gz = gzipped(&data);
            assert_eq!(inflate_bounded(&gz, size).unwrap(), data, "{size}");
            assert!(
                matches!(inflate_bounded(&gz, size - 1), Err(InflateError::TooLarge { limit }) if limit == size - 1),
                "{size}"
            );
            let over = gzipped(&vec![b'x'; size + 1]);
            assert!(
                matches!(inflate_bounded(&over, size), Err(InflateError::TooLarge { limit }) if limit == size),
                "{size}"
            );
        }
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gz = gzipped(&data);
        for cut in [1, 10, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
            assert!(
                matches!(inflate_bounded(&gz[..cut], 1 << 20), Err(InflateError::Invalid(_))),
                "cut at {cut} of {}",
                gz.len()
            );
        }
        // Garbage after a complete member is not a second member.
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"garbage");
        assert!(matches!(
            inflate_bounded(&trailing, 1 << 20),
            Err(InflateError::Invalid(_))
        ));
        // Two members inflate to both.
        let mut two = gz.clone();
        two.extend_from_slice(&gz);
        assert_eq!(inflate_bounded(&two, 1 << 20).unwrap().len(), 2 * data.len());
    }

    #[test]
    fn output_memory_never_passes_the_cap() {
        let limit = 300_000;
        let gz = gzipped(&vec![0u8; 10 << 20]);
        let mut job = BoundedInflater::new(Bytes::from(gz), limit).unwrap();
        assert!(matches!(job.run(None), Err(InflateError::TooLarge { .. })));
        assert!(job.out.capacity() <= limit, "{}", job.out.capacity());
    }

    #[tokio::test]
    async fn a_stored_holder_may_exceed_the_value_cap_by_the_holder_overhead() {
        let p = CompressionPolicy::new(CompressionSettings {
            max_inflated_bytes: 10_000,
            ..CompressionSettings::default()
        });
        let holder = gzipped(&vec![b'a'; 10_000 + HOLDER_OVERHEAD_BYTES]);
        assert!(matches!(
            p.inflate(Bytes::from(holder.clone())).await,
            Err(InflateError::TooLarge { limit: 10_000 })
        ));
        assert_eq!(
            p.inflate_stored(Bytes::from(holder)).await.unwrap().len(),
            10_000 + HOLDER_OVERHEAD_BYTES
        );
    }

    #[test]
    fn small_values_stay_plain() {
        let p = policy();
        assert!(!p.should_compress(100));
        assert!(p.should_compress(256));
    }
}
