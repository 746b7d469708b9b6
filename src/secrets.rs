//! Secrets at rest: the master key and AES-256-GCM sealing of every stored secret (tool proxy
//! shared secrets, developer key secrets, registration passwords, signing keys).
//!
//! A sealed secret is `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`; the associated data
//! names what the secret belongs to (`"tool_proxy:<guid>"` …), so a sealed value copied onto
//! another row does not open.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

/// Secret bytes that are wiped on drop and never printed by `Debug`. Clones share the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<Zeroizing<Vec<u8>>>);

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(std::sync::Arc::new(Zeroizing::new(bytes)))
    }

    /// The bytes (the HMAC key).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Errors of the master key and of sealing.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file or variable is not 64 hex characters.
    #[error("the master key must be 32 bytes written as 64 hex characters")]
    BadMasterKey,
    /// Reading or writing the key file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A sealed value does not open with this master key.
    #[error(
        "a stored secret could not be decrypted: wrong master key, or the row was tampered with"
    )]
    Open,
}

/// The master key that seals secrets at rest.
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key from 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretsError> {
        let bytes =
            Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| SecretsError::BadMasterKey)?);
        if bytes.len() != 32 {
            return Err(SecretsError::BadMasterKey);
        }
        Ok(Self(
            Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretsError::BadMasterKey)?,
        ))
    }

    /// A new random key; returns it with its hex form.
    pub fn generate() -> (Self, Zeroizing<String>) {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let hex_key = Zeroizing::new(hex::encode(bytes.as_ref()));
        (Self::from_hex(&hex_key).expect("32 bytes"), hex_key)
    }

    /// The key from `env_value` if given, else from `dir/master.key`, else a new key written
    /// there (mode 0600). The flag says whether a new key was generated.
    pub fn load_or_create(
        env_value: Option<&str>,
        dir: &Path,
    ) -> Result<(Self, bool), SecretsError> {
        if let Some(v) = env_value {
            return Ok((Self::from_hex(v)?, false));
        }
        let path = dir.join("master.key");
        let io = |source| SecretsError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok((Self::from_hex(&s)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let (key, hex_key) = Self::generate();
                write_private(&path, hex_key.as_bytes()).map_err(io)?;
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plain`, bound to `context`.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a small buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed with [`seal`](Self::seal) for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Secret, SecretsError> {
        if sealed.len() < 12 + 16 {
            return Err(SecretsError::Open);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map(Secret::new)
            .map_err(|_| SecretsError::Open)
    }
}

/// Writes a file readable only by its owner (where the platform has modes).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_is_bound_to_context_and_key() {
        let (k, _) = MasterKey::generate();
        let sealed = k.seal("tool_proxy:a", b"s3cret");
        assert_eq!(k.open("tool_proxy:a", &sealed).unwrap().expose(), b"s3cret");
        assert!(k.open("tool_proxy:b", &sealed).is_err());
        let (other, _) = MasterKey::generate();
        assert!(other.open("tool_proxy:a", &sealed).is_err());
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            format!("{:?}", Secret::new(b"x".to_vec())),
            "Secret(<redacted>)"
        );
    }
}
