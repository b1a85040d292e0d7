#![no_main]
//! Peer certificate inspection on arbitrary bytes.
//!
//! Input: the bytes are a peer's certificate DER, given to `spki_of` (what
//! the TLS verifier calls on every peer certificate) and `split_spki`
//! (what its TLS 1.2 signature check calls on the result),
//! `check_self_signed` (the verifier's next step), and, when they
//! are UTF-8, a certFile text given to `Identity::from_cert_file`. Checks:
//! nothing panics; a found SubjectPublicKeyInfo lies inside the input and
//! splits.
use foolscap_core::identity::{check_self_signed, spki_of, split_spki, Identity, TubId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TubId::of_certificate(data);
    if let Ok(spki) = spki_of(data) {
        let range = data.as_ptr_range();
        assert!(range.contains(&spki.as_ptr()) && spki.len() <= data.len());
        let (alg, key) = split_spki(spki).expect("spki_of checked it splits");
        let _ = (alg, key);
    }
    let _ = split_spki(data);
    let _ = check_self_signed(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Identity::from_cert_file(text);
    }
});
