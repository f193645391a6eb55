//! CPython's `random` module, as far as PubMedQA's `split_dataset.py` uses it: the Mersenne Twister
//! MT19937 seeded as `random.seed(int)` does (`init_by_array` over the integer's 32-bit words),
//! `getrandbits(k)` for k ≤ 32, `_randbelow` (rejection sampling on `n.bit_length()` bits),
//! `shuffle` (Fisher–Yates from the end) and `choice`. Same integers as CPython 3 (checked against
//! Python 3.11 in the tests), so the split reproduces the published one exactly.

const N: usize = 624;
const M: usize = 397;

/// The generator state of `random.Random`.
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer (CPython hashes negative seeds by their
    /// absolute value; we take the value given).
    pub fn seed(seed: u64) -> Self {
        let mut key: Vec<u32> = Vec::new();
        let mut n = seed;
        while n > 0 {
            key.push(n as u32);
            n >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        let mut r = PyRandom {
            mt: [0; N],
            index: N,
        };
        r.init_by_array(&key);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1812433253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19650218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1664525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1566083941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        self.mt[0] = 0x8000_0000;
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for k in 0..N {
            let y = (self.mt[k] & UPPER) | (self.mt[(k + 1) % N] & LOWER);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.generate();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for `k` in 0..=32.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        assert!(
            k <= 32,
            "getrandbits of more than 32 bits is not needed here"
        );
        if k == 0 {
            return 0;
        }
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)`: uniform in `0..n` (`n` ≥ 1, below 2^32).
    pub fn randbelow(&mut self, n: usize) -> usize {
        assert!(n >= 1 && n <= u32::MAX as usize, "randbelow({n})");
        let k = usize::BITS - n.leading_zeros(); // n.bit_length()
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(x)`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }

    /// `random.choice(seq)`: the index it picks (`seq` not empty).
    pub fn choice_index(&mut self, len: usize) -> usize {
        self.randbelow(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below was printed by Python 3.11.7's `random` module.

    #[test]
    fn seed_zero_matches_cpython() {
        let mut r = PyRandom::seed(0);
        let v: Vec<u32> = (0..5).map(|_| r.getrandbits(32)).collect();
        assert_eq!(
            v,
            [3626764237, 1654615998, 3255389356, 3823568514, 1806341205]
        );
        // random.seed(0); x = list(range(20)); random.shuffle(x); then 8 x random.choice("abcdefghij")
        let mut r = PyRandom::seed(0);
        let mut x: Vec<u32> = (0..20).collect();
        r.shuffle(&mut x);
        assert_eq!(
            x,
            [
                10, 18, 16, 14, 0, 17, 11, 2, 3, 9, 5, 7, 4, 19, 6, 15, 8, 1, 13, 12
            ]
        );
        let letters: Vec<u8> = b"abcdefghij".to_vec();
        let picked: String = (0..8)
            .map(|_| letters[r.choice_index(letters.len())] as char)
            .collect();
        assert_eq!(picked, "ebbfhibf");
    }

    #[test]
    fn multi_word_seeds_and_randbelow_match_cpython() {
        // random.seed(2**40 + 7): the key has two 32-bit words.
        let mut r = PyRandom::seed((1 << 40) + 7);
        let v: Vec<u32> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(v, [2635837658, 3209733218, 3500038837]);
        let w: Vec<u32> = (0..3).map(|_| r.getrandbits(7)).collect();
        assert_eq!(w, [120, 120, 81]);
        // r = random.Random(1); r._randbelow(1000) x 5, r._randbelow(1), r._randbelow(64),
        // r._randbelow(2**32 - 1)
        let mut r = PyRandom::seed(1);
        let v: Vec<usize> = (0..5).map(|_| r.randbelow(1000)).collect();
        assert_eq!(v, [137, 582, 867, 821, 782]);
        assert_eq!(r.randbelow(1), 0);
        assert_eq!(r.randbelow(64), 32);
        assert_eq!(r.randbelow(u32::MAX as usize), 506456969);
    }
}
