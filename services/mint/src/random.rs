//! The cryptographically secure randomness behind `{random:N}`, collision suffixes and link
//! slugs: the OS generator, read in blocks so a code costs no system call per character.

use tracking_pattern::RandomSource;

const BLOCK: usize = 256;

pub struct SecureRandom {
    buf: [u8; BLOCK],
    pos: usize,
}

impl Default for SecureRandom {
    fn default() -> Self {
        Self {
            buf: [0; BLOCK],
            pos: BLOCK,
        }
    }
}

impl SecureRandom {
    fn next_u32(&mut self) -> u32 {
        if self.pos + 4 > BLOCK {
            // A broken OS generator leaves no safe way to make unguessable codes.
            if let Err(err) = getrandom::fill(&mut self.buf) {
                panic!("the operating system's random generator failed: {err}");
            }
            self.pos = 0;
        }
        let bytes = [
            self.buf[self.pos],
            self.buf[self.pos + 1],
            self.buf[self.pos + 2],
            self.buf[self.pos + 3],
        ];
        self.pos += 4;
        u32::from_le_bytes(bytes)
    }

    /// An unguessable slug for a tracking link: 14 characters of [a-z0-9] (about 72 bits).
    pub fn slug(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..14)
            .map(|_| char::from(ALPHABET[self.fill_index(ALPHABET.len())]))
            .collect()
    }
}

impl RandomSource for SecureRandom {
    /// Uniform in `0..upper` by rejection sampling (no modulo bias).
    fn fill_index(&mut self, upper: usize) -> usize {
        let upper = upper.max(1) as u64;
        let zone = (u64::from(u32::MAX) + 1) / upper * upper;
        loop {
            let value = u64::from(self.next_u32());
            if value < zone {
                return (value % upper) as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_stay_in_range_and_cover_it() {
        let mut rng = SecureRandom::default();
        let mut seen = [false; 31];
        for _ in 0..5_000 {
            let i = rng.fill_index(31);
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s));
        let slug = rng.slug();
        assert_eq!(slug.len(), 14);
        assert_ne!(slug, rng.slug());
    }
}
