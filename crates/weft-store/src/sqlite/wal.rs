//! Damage SQLite passes over silently. SQLite reads a write-ahead log up to
//! its first frame that fails its checksum and ignores a log whose header
//! is invalid: the commits there are lost and the store reads as older, or
//! empty. For weft that means handing out addresses live containers hold,
//! so such a log is reported instead. The format is SQLite's documented
//! WAL file format (header of 32 bytes, frames of 24 bytes plus a page).

use std::path::Path;

const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const VERSION: u32 = 3_007_000;

/// Why the database and its log at `db` are damaged, or None.
pub fn damage(db: &Path) -> Option<String> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    // A new store may keep everything in the log and nothing yet in the
    // database file, so an empty database file says nothing by itself (an
    // emptied store is caught where the kernel still holds weft's objects).
    check_log(&std::fs::read(&wal).unwrap_or_default()).err()
}

/// Checks a whole log: its header, then its frames in order. A log that
/// stops at a torn last frame (a crash while writing it) is fine; a valid
/// frame of the current log after an invalid one means commits SQLite
/// would skip.
fn check_log(log: &[u8]) -> Result<(), String> {
    if log.is_empty() {
        return Ok(());
    }
    if log.len() < HEADER {
        return Err(format!("write-ahead log cut to {} bytes", log.len()));
    }
    let word = |at: usize| u32::from_be_bytes(log[at..at + 4].try_into().expect("4 bytes"));
    let magic = word(0);
    let big_endian = match magic {
        0x377f_0682 => false,
        0x377f_0683 => true,
        _ => return Err("write-ahead log header overwritten (bad magic)".into()),
    };
    if word(4) != VERSION {
        return Err("write-ahead log header overwritten (bad version)".into());
    }
    let page = word(8) as usize;
    if !(512..=65536).contains(&page) || !page.is_power_of_two() {
        return Err("write-ahead log header overwritten (bad page size)".into());
    }
    let mut sum = checksum(big_endian, (0, 0), &log[..24]);
    if sum != (word(24), word(28)) {
        return Err("write-ahead log header fails its checksum".into());
    }
    let salts = (word(16), word(20));
    let frame = FRAME_HEADER + page;
    let mut at = HEADER;
    let mut broken: Option<usize> = None;
    let mut index = 0;
    while at + frame <= log.len() {
        let f = &log[at..at + frame];
        let fw = |o: usize| u32::from_be_bytes(f[o..o + 4].try_into().expect("4 bytes"));
        let current = (fw(8), fw(12)) == salts;
        if broken.is_none() {
            let next = checksum(big_endian, checksum(big_endian, sum, &f[..8]), &f[FRAME_HEADER..]);
            if current && next == (fw(16), fw(20)) {
                sum = next;
            } else {
                broken = Some(index);
            }
        } else if current {
            return Err(format!(
                "write-ahead log frame {} is damaged and later commits would be lost",
                broken.unwrap_or_default()
            ));
        }
        at += frame;
        index += 1;
    }
    Ok(())
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing
/// from `(s0, s1)`.
fn checksum(big_endian: bool, (mut s0, mut s1): (u32, u32), data: &[u8]) -> (u32, u32) {
    let read = |b: &[u8]| {
        let b: [u8; 4] = b.try_into().expect("4 bytes");
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    for pair in data.chunks_exact(8) {
        s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(read(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_log_is_fine_and_garbage_is_not() {
        assert!(check_log(&[]).is_ok());
        assert!(check_log(&[0u8; 10]).is_err());
        assert!(check_log(&[0u8; 4096]).unwrap_err().contains("bad magic"));
    }
}
