//! Webhook signatures: `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest secret the API accepts.
pub const MIN_SECRET_LEN: usize = 32;

/// Whether `header` is the signature of `body` with `secret`. The comparison takes the same
/// time whatever the header holds, so it leaks nothing about the expected value.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(digest) = hex::decode(hex_digest) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

/// A new random secret of 48 letters and digits.
pub fn new_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..48)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::signature;

    #[test]
    fn verifies_only_the_right_signature() {
        let secret = new_secret();
        assert!(secret.len() >= MIN_SECRET_LEN);
        let body = br#"{"event":"statusChange"}"#;
        let good = signature(&secret, body);
        assert!(verify(&secret, body, &good));
        assert!(!verify(&secret, b"{}", &good), "another body");
        assert!(
            !verify("another secret of enough length....", body, &good),
            "another secret"
        );
        assert!(
            !verify(&secret, body, good.trim_start_matches("sha256=")),
            "no prefix"
        );
        assert!(!verify(&secret, body, "sha256=zz"), "not hex");
        assert!(!verify(&secret, body, ""), "empty");
    }
}
