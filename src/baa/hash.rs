//! `instruction_id = hash(message_id, block_index, block text)` (docs/BAA.md
//! "Exactly once"), with a small SHA-256 of our own (FIPS 180-4).
//!
//! Why SHA-256 and not something shorter: the id is the primary key that
//! makes a block run at most once, stored for good, so it must be (1)
//! stable across builds and Rust versions — `std`'s `DefaultHasher` makes
//! no such promise — and (2) impossible to collide on purpose: the block
//! text comes from an assistant, or from a page that injected a prompt into
//! it, and an FNV or fixed-key SipHash collision is cheap to compute. A
//! crafted collision would make a block silently count as "already run"
//! and alias another block's result. Truncated to 128 bits the ids stay
//! short and collisions remain out of reach. The cost — a few hundred
//! nanoseconds per block, only for messages that have blocks — is nothing
//! beside the store write. Sixty lines beat a crate for one hash.

/// The id of a message's block: `ins_` and 32 hex digits. The fields are
/// length-prefixed, so no two different triples hash the same input.
pub fn instruction_id(message_id: &str, block_index: usize, text: &str) -> String {
    let mut input = Vec::with_capacity(32 + message_id.len() + text.len());
    input.extend_from_slice(b"baa.instruction.v1\0");
    input.extend_from_slice(&(message_id.len() as u64).to_be_bytes());
    input.extend_from_slice(message_id.as_bytes());
    input.extend_from_slice(&(block_index as u64).to_be_bytes());
    input.extend_from_slice(&(text.len() as u64).to_be_bytes());
    input.extend_from_slice(text.as_bytes());
    let digest = sha256(&input);
    let mut id = String::with_capacity(36);
    id.push_str("ins_");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut padded = data.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for chunk in padded.chunks_exact(64) {
        compress(&mut h, chunk);
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn compress(h: &mut [u32; 8], chunk: &[u8]) {
    let mut w = [0u32; 64];
    for (i, word) in chunk.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        hh = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
        *slot = slot.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_matches_the_fips_test_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // One million 'a': many blocks, and a length that is not a multiple of 64.
        assert_eq!(
            hex(&sha256(&vec![b'a'; 1_000_000])),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        // 55 and 56 bytes: the padding boundary either side of one block.
        assert_eq!(
            hex(&sha256(&[b'a'; 55])),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"
        );
        assert_eq!(
            hex(&sha256(&[b'a'; 56])),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"
        );
    }

    #[test]
    fn instruction_ids_are_stable_and_separate_their_fields() {
        let id = instruction_id("msg_1", 0, "@conductor.status");
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("ins_"));
        assert_eq!(id, instruction_id("msg_1", 0, "@conductor.status"));
        // Pinned (computed with Python's hashlib over the same bytes): the id
        // must never change between builds.
        assert_eq!(id, "ins_b24962ffe0bd7d7dcaebdf05ac33b258");
        assert_ne!(id, instruction_id("msg_1", 1, "@conductor.status"));
        assert_ne!(id, instruction_id("msg_2", 0, "@conductor.status"));
        assert_ne!(id, instruction_id("msg_1", 0, "@conductor.status "));
        // Without length prefixes these two would feed the same bytes.
        assert_ne!(instruction_id("ab", 0, "c"), instruction_id("a", 0, "bc"));
    }
}
