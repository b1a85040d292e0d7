//! Injectable randomness.
//!
//! The core never reaches for a global random source: whatever needs random
//! bytes (Tub incarnations, swissnums) takes an [`Rng`]. Drivers pass
//! [`SystemRng`]; tests pass [`SeededRng`] and get the same bytes on every
//! run. (TLS itself draws from its crypto provider's CSPRNG, and fresh
//! private keys from ring's; neither is meant to be replayed.)

/// A source of random bytes.
pub trait Rng {
    /// Fills `buf` completely.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf)
    }
}

impl<R: Rng + ?Sized> Rng for Box<R> {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf)
    }
}

/// The operating system's CSPRNG (through ring).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRng;

impl Rng for SystemRng {
    /// # Panics
    /// If the OS has no randomness to give, which no Tub can survive.
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .expect("the operating system's random number generator failed");
    }
}

/// A deterministic generator (SplitMix64) for tests and replays.
///
/// Not cryptographically secure: never use it for a real Tub.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_system_is_not_constant() {
        let (mut a, mut b) = ([0u8; 13], [0u8; 13]);
        SeededRng::new(7).fill(&mut a);
        SeededRng::new(7).fill(&mut b);
        assert_eq!(a, b);
        SeededRng::new(8).fill(&mut b);
        assert_ne!(a, b);
        let (mut c, mut d) = ([0u8; 16], [0u8; 16]);
        SystemRng.fill(&mut c);
        SystemRng.fill(&mut d);
        assert_ne!(c, d);
    }
}
