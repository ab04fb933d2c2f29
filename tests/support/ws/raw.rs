//! WebSocket frames as bytes, for what tungstenite will not do: split the
//! daemon's frames read straight off the socket (so a stalled client sends
//! nothing, not even its owed pongs), and build masked client frames a
//! test writes raw (an oversize or malformed frame).

/// Splits unmasked server frames; stops at an incomplete one.
pub fn parse_server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let masked = bytes[1] & 0x80 != 0;
        let mut len = (bytes[1] & 0x7f) as usize;
        let mut pos = 2;
        if len == 126 {
            if bytes.len() < 4 {
                break;
            }
            len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            pos = 4;
        } else if len == 127 {
            if bytes.len() < 10 {
                break;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[2..10]);
            len = u64::from_be_bytes(b) as usize;
            pos = 10;
        }
        if masked {
            pos += 4;
        }
        if bytes.len() < pos + len {
            break;
        }
        frames.push((opcode, bytes[pos..pos + len].to_vec()));
        bytes = &bytes[pos + len..];
    }
    frames
}

/// A masked client frame (`fin` set) with the given opcode and payload.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | (opcode & 0x0f)];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}
