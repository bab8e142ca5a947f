//! The webhook signature check on any secret, body and header: no panic, and a signature
//! made with the secret always verifies while a changed body never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrate::cursor::webhook::verify;
use orchestrate::sim::signature;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let (secret, rest) = rest.split_at((split as usize).min(rest.len()));
    let secret = String::from_utf8_lossy(secret);
    let (header, body) = rest.split_at(rest.len() / 2);
    let _ = verify(&secret, body, &String::from_utf8_lossy(header));
    let good = signature(&secret, body);
    assert!(verify(&secret, body, &good));
    let mut changed = body.to_vec();
    changed.push(0);
    assert!(!verify(&secret, &changed, &good));
});
