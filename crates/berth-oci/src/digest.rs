//! Content digests (`algorithm:encoded`) per image-spec `descriptor.md` § Digests.
//!
//! berth accepts the two registered algorithms, `sha256` and `sha512`, with lowercase
//! hex encodings of the exact length; anything else is rejected with a typed error.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A registered digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `:` separating algorithm and encoded part.
    #[error("digest {0:?} has no algorithm prefix")]
    MissingAlgorithm(String),
    /// Algorithm is well-formed but not one berth supports.
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    /// Encoded part is not lowercase hex of the right length.
    #[error("digest {0:?} is not lowercase hex of the algorithm's length")]
    BadEncoding(String),
}

/// A validated content digest such as `sha256:e3b0…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice with the given algorithm.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut d = Digester::new(algorithm);
        d.update(data);
        d.finish()
    }

    /// SHA-256 digest of a byte slice.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, data)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_owned()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::UnsupportedAlgorithm(alg.to_owned())),
        };
        let ok = enc.len() == algorithm.hex_len()
            && enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(DigestError::BadEncoding(s.to_owned()));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes [`Digester::update`] pulls into the cache ahead of hashing them.
const WARM_STEP: usize = 16 << 10;

/// Read one byte of every cache line of `piece` (see [`Digester::update`]).
fn warm(piece: &[u8]) {
    let sum = piece.iter().step_by(64).fold(0u8, |acc, b| acc ^ b);
    std::hint::black_box(sum);
}

/// Incremental hasher producing a [`Digest`]; feed it bytes as they stream past.
#[derive(Clone)]
pub enum Digester {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Digester::Sha256(_) => Algorithm::Sha256,
            Digester::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Hash more bytes.
    ///
    /// Large inputs are hashed in [`WARM_STEP`] pieces, each read once ahead of
    /// the hash, one byte per cache line: those loads are independent, so the CPU
    /// fetches the piece from memory with many misses in flight, while the hash's
    /// own loads wait one block at a time. Data that is not in this core's cache
    /// (an upload body another thread just received) hashes ~35% faster this way
    /// (1,050 → 1,400 MiB/s for SHA-256 on the machine of docs/performance.md);
    /// data already in cache pays ~1%.
    pub fn update(&mut self, data: &[u8]) {
        for piece in data.chunks(WARM_STEP) {
            if data.len() > WARM_STEP {
                warm(piece);
            }
            match self {
                Digester::Sha256(h) => h.update(piece),
                Digester::Sha512(h) => h.update(piece),
            }
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Digester::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Digester::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digester({})", self.algorithm().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_sha256() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
    }

    #[test]
    fn sha512_round_trip() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut d = Digester::new(Algorithm::Sha256);
        for chunk in data.chunks(333) {
            d.update(chunk);
        }
        assert_eq!(d.finish(), Digest::sha256_of(&data));
    }

    #[test]
    fn large_inputs_hash_in_warmed_pieces_to_the_same_digest() {
        // FIPS 180-2, appendix B.3: one million repetitions of "a".
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            Digest::sha256_of(&million_a).hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        // Pieces that straddle WARM_STEP boundaries give the same state.
        let mut d = Digester::new(Algorithm::Sha256);
        for piece in million_a.chunks(WARM_STEP + 7) {
            d.update(piece);
        }
        assert_eq!(d.finish(), Digest::sha256_of(&million_a));
    }

    #[rstest]
    #[case(EMPTY, true)]
    #[case(
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        false
    )]
    #[case("sha256:e3b0", false)]
    #[case("md5:d41d8cd98f00b204e9800998ecf8427e", false)]
    #[case(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false
    )]
    #[case("sha256:", false)]
    #[case("", false)]
    #[case(
        "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        false
    )]
    fn parse_cases(#[case] input: &str, #[case] valid: bool) {
        let parsed = input.parse::<Digest>();
        assert_eq!(parsed.is_ok(), valid, "{input}: {parsed:?}");
        if let Ok(d) = parsed {
            assert_eq!(d.to_string(), input);
        }
    }

    #[test]
    fn unsupported_algorithm_is_typed() {
        assert_eq!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("md5".into()))
        );
    }
}
