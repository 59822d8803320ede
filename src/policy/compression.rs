//! The compression policy: gzip values from a size threshold, inflate with a hard cap.
//!
//! mognet gzips every value; its readers accept both gzip and plain contents, so resultd keeps
//! small values plain (gzip makes a 44-byte holder 61 bytes) and gzips the rest. Inflation is
//! always bounded by `max_inflated_bytes`, which is what stops a gzip bomb.

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder};
use tokio::io::AsyncReadExt;

use crate::config::CompressionSettings;

/// Why inflating a gzip stream failed.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    /// The stream inflates to more than the cap.
    #[error("inflated size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The bytes are not a valid gzip stream.
    #[error("not a valid gzip stream: {0}")]
    Invalid(std::io::Error),
}

/// When and how values are compressed.
#[derive(Debug, Clone)]
pub struct CompressionPolicy {
    settings: CompressionSettings,
}

impl CompressionPolicy {
    /// Builds the policy from settings (already validated).
    pub fn new(settings: CompressionSettings) -> Self {
        Self { settings }
    }

    /// The largest size a stored or uploaded gzip stream may inflate to.
    pub fn max_inflated_bytes(&self) -> usize {
        self.settings.max_inflated_bytes
    }

    /// Whether a holder of `len` bytes is stored gzipped.
    pub fn should_compress(&self, len: usize) -> bool {
        self.settings.enabled && len >= self.settings.min_bytes
    }

    /// Gzips `data` at the configured level.
    pub async fn compress(&self, data: &[u8]) -> Vec<u8> {
        let level = Level::Precise(i32::from(self.settings.level));
        let mut encoder = GzipEncoder::with_quality(data, level);
        let mut out = Vec::with_capacity(data.len() / 4 + 32);
        // Reading from a byte slice cannot fail.
        let _ = encoder.read_to_end(&mut out).await;
        out
    }

    /// Inflates a gzip stream (one or more members), refusing output over the cap.
    pub async fn inflate(&self, data: &[u8]) -> Result<Vec<u8>, InflateError> {
        inflate_bounded(data, self.settings.max_inflated_bytes).await
    }
}

/// Inflates `data`, failing once the output would exceed `limit` bytes.
pub async fn inflate_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut decoder = GzipDecoder::new(data);
    decoder.multiple_members(true);
    let mut out = Vec::with_capacity((data.len() * 4).min(limit));
    let mut bounded = decoder.take(limit as u64 + 1);
    bounded.read_to_end(&mut out).await.map_err(InflateError::Invalid)?;
    if out.len() > limit {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CompressionPolicy {
        CompressionPolicy::new(CompressionSettings::default())
    }

    #[tokio::test]
    async fn compressed_values_inflate_back() {
        let p = policy();
        let data = b"{\"value_type\":\"builtins:str\",\"raw_value\":\"aaaaaaaaaaaaaaaa\"}".repeat(20);
        let gz = p.compress(&data).await;
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(p.inflate(&gz).await.unwrap(), data);
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
        let out = policy().inflate(&gz).await.unwrap();
        assert_eq!(out, br#"{"value_type":"builtins:int","raw_value":42}"#);
    }

    #[tokio::test]
    async fn inflation_past_the_cap_is_refused() {
        let p = policy();
        let gz = p.compress(&vec![b'a'; 4096]).await;
        assert!(matches!(
            inflate_bounded(&gz, 1000).await,
            Err(InflateError::TooLarge { limit: 1000 })
        ));
        assert!(matches!(p.inflate(b"not gzip").await, Err(InflateError::Invalid(_))));
    }

    #[test]
    fn small_values_stay_plain() {
        let p = policy();
        assert!(!p.should_compress(100));
        assert!(p.should_compress(256));
    }
}
