//! Middlebury .flo files: "PIEH" (202021.25 as f32), width and height as i32, then
//! interleaved (u, v) f32 per pixel, row-major, all little-endian.

use std::io::{self, Read, Write};
use std::path::Path;

use super::Flow;

const MAGIC: f32 = 202_021.25;
/// Larger fields are refused rather than allocated (a corrupt header must not
/// exhaust memory).
const MAX_PIXELS: u64 = 1 << 28;

/// Writes `flow` as a .flo file.
pub fn write(path: impl AsRef<Path>, flow: &Flow) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = io::BufWriter::new(file);
    write_to(&mut out, flow)?;
    out.flush()
}

/// Reads a .flo file.
pub fn read(path: impl AsRef<Path>) -> io::Result<Flow> {
    let file = std::fs::File::open(path)?;
    read_from(io::BufReader::new(file))
}

/// Writes `flow` in .flo format to any writer.
pub fn write_to(out: &mut impl Write, flow: &Flow) -> io::Result<()> {
    let n = flow.width * flow.height;
    if flow.u.len() != n || flow.v.len() != n {
        return Err(invalid("flow buffers do not match its dimensions"));
    }
    let dim = |d: usize| i32::try_from(d).map_err(|_| invalid("flow too large for .flo"));
    out.write_all(&MAGIC.to_le_bytes())?;
    out.write_all(&dim(flow.width)?.to_le_bytes())?;
    out.write_all(&dim(flow.height)?.to_le_bytes())?;
    let mut bytes = Vec::with_capacity(8 * n);
    for (u, v) in flow.u.iter().zip(&flow.v) {
        bytes.extend_from_slice(&u.to_le_bytes());
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&bytes)
}

/// Reads a .flo stream, refusing a wrong magic number, absurd dimensions or short data.
pub fn read_from(mut input: impl Read) -> io::Result<Flow> {
    let mut header = [0u8; 12];
    input.read_exact(&mut header)?;
    let word = |i: usize| [header[i], header[i + 1], header[i + 2], header[i + 3]];
    if f32::from_le_bytes(word(0)) != MAGIC {
        return Err(invalid("not a .flo file (bad magic number)"));
    }
    let (w, h) = (i32::from_le_bytes(word(4)), i32::from_le_bytes(word(8)));
    if w < 0 || h < 0 || (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(invalid("bad .flo dimensions"));
    }
    let (w, h) = (w as usize, h as usize);
    let mut bytes = vec![0u8; 8 * w * h];
    input.read_exact(&mut bytes)?;
    let mut flow = Flow::zeros(w, h);
    for (i, px) in bytes.chunks_exact(8).enumerate() {
        flow.u[i] = f32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        flow.v[i] = f32::from_le_bytes([px[4], px[5], px[6], px[7]]);
    }
    Ok(flow)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}
