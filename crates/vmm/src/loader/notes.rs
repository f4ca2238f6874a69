//! The ELF notes an hvt monitor reads (docs/hvt-abi.md, Notes): Solo5's ABI1 and MFT1, and sturdy's
//! own note (`sturdy_abi::sturdy_note`).
//!
//! Each lookup walks the PT_NOTE program headers in order, as upstream does, and stops at the
//! first note with the sought name and type. Notes with other names are ignored, which is what
//! lets a sturdy guest carry its own note and still run on upstream solo5-hvt.

use std::ops::RangeInclusive;

use sturdy_abi::note::{
    self, ABI1_ALIGN, ABI1_MAX_DESCSZ, ABI1_TYPE, MFT1_ALIGN, MFT1_MAX_DESCSZ, MFT1_TYPE,
    NOTE_HEADER_SIZE, SOLO5_NOTE_NAME,
};
use sturdy_abi::sturdy_note::{
    SturdyInfo, KNOWN_FLAGS, STURDY_NOTE_DESCSZ, STURDY_NOTE_NAME, STURDY_NOTE_TYPE,
    STURDY_NOTE_VERSION,
};
use sturdy_abi::{get_u32, HVT_ABI_VERSION};

use super::elf::{slice, Elf, PT_NOTE};
use super::LoadError;

/// `n_namesz` + `n_descsz` + `n_type`: a PT_NOTE smaller than this makes the file invalid.
const NHDR_SIZE: u64 = 12;
/// Size of `struct abi1_info`: the ABI1 fields the monitor reads.
const ABI1_INFO_SIZE: usize = 16;

/// What a note lookup is looking for.
struct NoteSpec {
    /// The name, NUL included; `n_namesz` must equal its length.
    name: &'static [u8],
    n_type: u32,
    /// Alignment of the descriptor within the note (a power of two).
    align: u64,
    /// Accepted `n_descsz` values.
    descsz: RangeInclusive<u32>,
    /// Words for the matching note in errors: "ABI1 note in program header 3: {why}", or, for
    /// sturdy's note, "malformed sturdy note: {why} (program header 3)".
    solo5_name: Option<&'static str>,
}

impl NoteSpec {
    fn malformed(&self, phdr: usize, why: String) -> LoadError {
        LoadError::Invalid(match self.solo5_name {
            Some(name) => format!("{name} note in program header {phdr}: {why}"),
            None => format!("malformed sturdy note: {why} (program header {phdr})"),
        })
    }
}

// Spec 1.1 table (the u32 conversions are of small constants).
const ABI1: NoteSpec = NoteSpec {
    name: SOLO5_NOTE_NAME,
    n_type: ABI1_TYPE,
    align: ABI1_ALIGN as u64,
    descsz: 1..=ABI1_MAX_DESCSZ as u32,
    solo5_name: Some("ABI1"),
};
const MFT1: NoteSpec = NoteSpec {
    name: SOLO5_NOTE_NAME,
    n_type: MFT1_TYPE,
    align: MFT1_ALIGN as u64,
    descsz: 1..=MFT1_MAX_DESCSZ as u32,
    solo5_name: Some("MFT1"),
};
const STURDY: NoteSpec = NoteSpec {
    name: STURDY_NOTE_NAME,
    n_type: STURDY_NOTE_TYPE,
    align: 4,
    descsz: STURDY_NOTE_DESCSZ as u32..=STURDY_NOTE_DESCSZ as u32,
    solo5_name: None,
};

/// A note that matched: the program header it is in and its usable descriptor.
struct Found<'a> {
    phdr: usize,
    desc: &'a [u8],
}

/// Walks the PT_NOTE headers for the first note matching `spec` (docs/hvt-abi.md, Notes).
fn find<'a>(elf: &Elf<'a>, spec: &NoteSpec) -> Result<Option<Found<'a>>, LoadError> {
    for (i, ph) in elf.phdrs.iter().enumerate() {
        if ph.p_type != PT_NOTE {
            continue;
        }
        if ph.p_filesz < NHDR_SIZE {
            return Err(LoadError::Invalid(format!(
                "truncated note in program header {i} (p_filesz {} < {NHDR_SIZE})",
                ph.p_filesz
            )));
        }
        if ph.p_filesz < NOTE_HEADER_SIZE as u64 {
            continue; // too small to be a note we look for
        }
        let h = slice(elf.bytes, ph.p_offset, NOTE_HEADER_SIZE as u64).ok_or_else(|| {
            LoadError::Invalid(format!(
                "note in program header {i} lies outside the file (p_offset {:#x}, file is {} bytes)",
                ph.p_offset,
                elf.bytes.len()
            ))
        })?;
        let (n_namesz, n_descsz, n_type) = (get_u32(h, 0), get_u32(h, 4), get_u32(h, 8));
        let name = &h[12..20];
        if n_namesz as usize != spec.name.len()
            || !name.starts_with(spec.name)
            || n_type != spec.n_type
        {
            continue;
        }

        if !spec.descsz.contains(&n_descsz) {
            let expected = if spec.descsz.start() == spec.descsz.end() {
                spec.descsz.start().to_string()
            } else {
                format!("{}..={}", spec.descsz.start(), spec.descsz.end())
            };
            return Err(spec.malformed(i, format!("n_descsz {n_descsz}, expected {expected}")));
        }
        let needed = NOTE_HEADER_SIZE as u64 + u64::from(n_descsz);
        if ph.p_filesz < needed {
            return Err(spec.malformed(
                i,
                format!(
                    "truncated, p_filesz {} < {needed} for n_descsz {n_descsz}",
                    ph.p_filesz
                ),
            ));
        }
        // The descriptor starts at the note's alignment; the padding counts in n_descsz.
        let desc_off = (NOTE_HEADER_SIZE as u64).next_multiple_of(spec.align);
        let pad = desc_off - NOTE_HEADER_SIZE as u64;
        let usable = u64::from(n_descsz)
            .checked_sub(pad)
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                spec.malformed(
                    i,
                    format!(
                        "n_descsz {n_descsz} leaves no descriptor after {pad} bytes of padding"
                    ),
                )
            })?;
        let desc = ph
            .p_offset
            .checked_add(desc_off)
            .and_then(|off| slice(elf.bytes, off, usable))
            .ok_or_else(|| spec.malformed(i, "descriptor lies past the end of the file".into()))?;
        return Ok(Some(Found { phdr: i, desc }));
    }
    Ok(None)
}

/// Finds the ABI1 note and checks that it asks for hvt ABI version 2 (docs/hvt-abi.md, Notes).
pub fn check_abi1(elf: &Elf) -> Result<(), LoadError> {
    let found = find(elf, &ABI1)?.ok_or(LoadError::NoAbi)?;
    let d = found.desc;
    if d.len() < ABI1_INFO_SIZE {
        return Err(ABI1.malformed(
            found.phdr,
            format!(
                "{}-byte descriptor, abi1_info needs {ABI1_INFO_SIZE}",
                d.len()
            ),
        ));
    }
    let (target, version) = (get_u32(d, 0), get_u32(d, 4));
    if target != note::ABI_TARGET_HVT {
        return Err(LoadError::WrongTarget { target });
    }
    if version != HVT_ABI_VERSION {
        return Err(LoadError::UnsupportedVersion(version));
    }
    Ok(())
}

/// The usable MFT1 descriptor (`struct mft`, after its 4 bytes of padding), not yet validated.
pub fn find_mft1<'a>(elf: &Elf<'a>) -> Result<&'a [u8], LoadError> {
    Ok(find(elf, &MFT1)?.ok_or(LoadError::NoManifest)?.desc)
}

/// sturdy's own note, if the executable carries one; refused if present but malformed.
pub fn find_sturdy(elf: &Elf) -> Result<Option<SturdyInfo>, LoadError> {
    let Some(found) = find(elf, &STURDY)? else {
        return Ok(None);
    };
    // n_descsz is exactly 8 (checked by `find`), and the alignment is 4: no padding.
    let info = SturdyInfo {
        version: get_u32(found.desc, 0),
        flags: get_u32(found.desc, 4),
    };
    if info.version != STURDY_NOTE_VERSION {
        return Err(STURDY.malformed(
            found.phdr,
            format!("version {}, expected {STURDY_NOTE_VERSION}", info.version),
        ));
    }
    let unknown = info.flags & !KNOWN_FLAGS;
    if unknown != 0 {
        return Err(STURDY.malformed(found.phdr, format!("unknown flags {unknown:#x}")));
    }
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::super::image::*;
    use super::super::{parse, LoadError};
    use crate::manifest::tests::{entry, mft};
    use sturdy_abi::mft::{MftEntry, MFT_DEV_BLOCK_BASIC, MFT_RESERVED_FIRST};
    use sturdy_abi::note::ABI_TARGET_SPT;
    use sturdy_abi::sturdy_note::{SturdyInfo, FLAG_DEPRIVILEGED, STURDY_NOTE_TYPE};
    use sturdy_abi::{put_u32, put_u64};

    const MEM: u64 = 64 * MIB;

    fn err(file: &[u8]) -> String {
        parse(file, MEM)
            .expect_err("executable accepted")
            .to_string()
    }

    fn field(file: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(file[off..off + 8].try_into().unwrap())
    }

    /// Offset in the file of the note in program header `i`.
    fn note_off(file: &[u8], i: usize) -> usize {
        field(file, phdr_off(i) + P_OFFSET) as usize
    }

    /// The image with its note `i` replaced.
    fn with_note(i: usize, note: Vec<u8>) -> Image {
        let mut image = Image::hvt();
        image.parts[i] = Part::Note(note);
        image
    }

    /// The built image with `n_descsz` of note `i` set to `v`.
    fn with_descsz(image: &Image, i: usize, v: u32) -> Vec<u8> {
        let mut f = image.build();
        let off = note_off(&f, i);
        put_u32(&mut f, off + 4, v);
        f
    }

    #[test]
    fn pt_note_smaller_than_a_note_header_is_invalid() {
        let mut f = Image::hvt().build();
        put_u64(&mut f, phdr_off(ABI1) + P_FILESZ, 11);
        assert_eq!(
            err(&f),
            "invalid executable: truncated note in program header 6 (p_filesz 11 < 12)"
        );
        put_u64(&mut f, phdr_off(ABI1) + P_FILESZ, 0);
        assert_eq!(
            err(&f),
            "invalid executable: truncated note in program header 6 (p_filesz 0 < 12)"
        );
        // Also after the notes that were found: every lookup walks all PT_NOTEs up to its match.
        let mut image = Image::hvt();
        image.parts.push(Part::Note(vec![0; 8]));
        assert_eq!(
            err(&image.build()),
            "invalid executable: truncated note in program header 8 (p_filesz 8 < 12)"
        );
    }

    #[test]
    fn pt_note_too_small_for_a_solo5_note_is_skipped() {
        // 12..20 bytes: not read at all, even when it points outside the file.
        let mut f = Image::hvt().build();
        put_u64(&mut f, phdr_off(ABI1) + P_FILESZ, 19);
        put_u64(&mut f, phdr_off(ABI1) + P_OFFSET, u64::MAX);
        assert_eq!(err(&f), "No Solo5 ABI information found in executable");
        let mut image = Image::hvt();
        image.parts.insert(ABI1, Part::Note(vec![0xff; 12]));
        assert!(parse(&image.build(), MEM).is_ok());
    }

    #[test]
    fn note_outside_the_file() {
        let mut f = Image::hvt().build();
        let len = f.len();
        put_u64(&mut f, phdr_off(ABI1) + P_OFFSET, len as u64 - 19);
        assert_eq!(
            err(&f),
            format!("invalid executable: note in program header 6 lies outside the file (p_offset {:#x}, file is {len} bytes)", len - 19)
        );
        put_u64(&mut f, phdr_off(ABI1) + P_OFFSET, u64::MAX - 3);
        assert!(err(&f).starts_with("invalid executable: note in program header 6 lies outside the file (p_offset 0xfffffffffffffffc"));
    }

    #[test]
    fn descriptor_outside_the_file() {
        // An ABI1 note at the very end of the file, cut after its header.
        let mut image = Image::hvt();
        let abi1 = abi1_note(1, 2);
        image.parts.remove(ABI1);
        image.parts.push(Part::Note(abi1[..20].to_vec()));
        let last = image.parts.len() - 1;
        let mut f = image.build();
        assert_eq!(err(&f), "invalid executable: ABI1 note in program header 7: truncated, p_filesz 20 < 36 for n_descsz 16");
        put_u64(&mut f, phdr_off(last) + P_FILESZ, 36);
        assert_eq!(err(&f), "invalid executable: ABI1 note in program header 7: descriptor lies past the end of the file");
        f.extend_from_slice(&abi1[20..]);
        assert!(parse(&f, MEM).is_ok());
    }

    #[test]
    fn abi1_missing() {
        let mut image = Image::hvt();
        image.parts.remove(ABI1);
        assert_eq!(
            err(&image.build()),
            "No Solo5 ABI information found in executable"
        );
        // Wrong name, n_namesz or type: not the ABI1 note.
        let mut note = abi1_note(1, 2);
        note[12..18].copy_from_slice(b"Solo6\0");
        assert_eq!(
            err(&with_note(ABI1, note).build()),
            "No Solo5 ABI information found in executable"
        );
        let mut note = abi1_note(1, 2);
        put_u32(&mut note, 0, 5);
        assert_eq!(
            err(&with_note(ABI1, note).build()),
            "No Solo5 ABI information found in executable"
        );
        let mut note = abi1_note(1, 2);
        put_u32(&mut note, 8, 0x3249_4241); // "ABI2"
        assert_eq!(
            err(&with_note(ABI1, note).build()),
            "No Solo5 ABI information found in executable"
        );
        // The same bytes in a segment that is not a PT_NOTE.
        let mut image = Image::hvt();
        image.parts[ABI1] = Part::Other {
            p_type: 6,
            data: abi1_note(1, 2),
        };
        assert_eq!(
            err(&image.build()),
            "No Solo5 ABI information found in executable"
        );
    }

    #[test]
    fn abi1_target_and_version() {
        let e = parse(&with_note(ABI1, abi1_note(ABI_TARGET_SPT, 2)).build(), MEM).unwrap_err();
        assert!(matches!(e, LoadError::WrongTarget { target: 2 }));
        assert_eq!(e.to_string(), "Executable is not for the solo5-hvt target");
        assert_eq!(
            err(&with_note(ABI1, abi1_note(1, 1)).build()),
            "Executable requests unsupported ABI version 1"
        );
        assert_eq!(
            err(&with_note(ABI1, abi1_note(1, 3)).build()),
            "Executable requests unsupported ABI version 3"
        );
        // reserved0/1 are ignored.
        let mut note = abi1_note(1, 2);
        note[28..36].fill(0xff);
        assert!(parse(&with_note(ABI1, note).build(), MEM).is_ok());
    }

    #[test]
    fn abi1_descsz() {
        let image = Image::hvt();
        assert_eq!(
            err(&with_descsz(&image, ABI1, 0)),
            "invalid executable: ABI1 note in program header 6: n_descsz 0, expected 1..=32"
        );
        assert_eq!(
            err(&with_descsz(&image, ABI1, 33)),
            "invalid executable: ABI1 note in program header 6: n_descsz 33, expected 1..=32"
        );
        assert_eq!(
            err(&with_descsz(&image, ABI1, 32)),
            "invalid executable: ABI1 note in program header 6: truncated, p_filesz 36 < 52 for n_descsz 32"
        );
        assert_eq!(
            err(&with_descsz(&image, ABI1, 8)),
            "invalid executable: ABI1 note in program header 6: 8-byte descriptor, abi1_info needs 16"
        );
        // Up to the maximum, with room for it.
        let mut note = abi1_note(1, 2);
        note.extend_from_slice(&[0; 16]);
        put_u32(&mut note, 4, 32);
        assert!(parse(&with_note(ABI1, note).build(), MEM).is_ok());
    }

    #[test]
    fn first_matching_note_wins() {
        let mut image = Image::hvt();
        image.parts.insert(ABI1, Part::Note(abi1_note(1, 7)));
        assert_eq!(
            err(&image.build()),
            "Executable requests unsupported ABI version 7"
        );
        let mut image = Image::hvt();
        image.parts.push(Part::Note(abi1_note(1, 7)));
        assert!(parse(&image.build(), MEM).is_ok());
    }

    #[test]
    fn other_notes_are_ignored() {
        let mut image = Image::hvt();
        image
            .parts
            .insert(ABI1, Part::Note(note(b"GNU\0", 3, 4, &[0xab; 20])));
        image.parts.push(Part::Note(note(b"Xen\0", 1, 4, &[0; 4])));
        // A "Solo5" note of a type nobody asks for, even malformed.
        image
            .parts
            .push(Part::Note(note(b"Solo5\0", 0x3154_4f4e, 4, &[])));
        assert!(parse(&image.build(), MEM).is_ok());
    }

    #[test]
    fn mft1_missing_or_malformed_note() {
        let mut image = Image::hvt();
        image.parts.remove(MFT1);
        assert_eq!(err(&image.build()), "No Solo5 manifest found in executable");

        let image = Image::hvt();
        assert_eq!(
            err(&with_descsz(&image, MFT1, 4)),
            "invalid executable: MFT1 note in program header 7: n_descsz 4 leaves no descriptor after 4 bytes of padding"
        );
        assert_eq!(
            err(&with_descsz(&image, MFT1, 2)),
            "invalid executable: MFT1 note in program header 7: n_descsz 2 leaves no descriptor after 4 bytes of padding"
        );
        assert_eq!(
            err(&with_descsz(&image, MFT1, 6669)),
            "invalid executable: MFT1 note in program header 7: n_descsz 6669, expected 1..=6668"
        );
        assert_eq!(
            err(&with_descsz(&image, MFT1, 6668)),
            "invalid executable: MFT1 note in program header 7: truncated, p_filesz 136 < 6688 for n_descsz 6668"
        );
    }

    #[test]
    fn mft1_invalid_manifest() {
        let reserved = || entry(b"", MFT_RESERVED_FIRST);
        let invalid = |m: Vec<u8>| err(&with_note(MFT1, mft1_note(&m)).build());

        // Size: n_descsz says less than the entries need.
        assert_eq!(
            err(&with_descsz(&Image::hvt(), MFT1, 4 + 104)),
            "Solo5 manifest is invalid: 1 entries need 112 bytes, note has 104"
        );
        let mut m = mft(&[reserved()]);
        put_u32(&mut m, 0, 2);
        assert_eq!(
            invalid(m),
            "Solo5 manifest is invalid: version 2, expected 1"
        );
        let mut m = mft(&[reserved()]);
        put_u32(&mut m, 4, 65);
        assert_eq!(
            invalid(m),
            "Solo5 manifest is invalid: 65 entries, at most 64"
        );
        assert!(invalid(mft(&[entry(b"disk", MFT_DEV_BLOCK_BASIC)]))
            .starts_with("Solo5 manifest is invalid: entry 0 must have type RESERVED_FIRST"));
        let mut named = entry(&[b'x'; 68], MFT_DEV_BLOCK_BASIC);
        named[67] = b'y';
        assert_eq!(
            invalid(mft(&[reserved(), named])),
            "Solo5 manifest is invalid: entry 1: name is not NUL-terminated within 68 bytes"
        );
        let mut attached = entry(b"disk", MFT_DEV_BLOCK_BASIC);
        attached[MftEntry::OFF_ATTACHED] = 1;
        assert_eq!(
            invalid(mft(&[reserved(), attached])),
            "Solo5 manifest is invalid: entry 1: attached is already set in the executable"
        );
        assert_eq!(
            invalid(mft(&[])),
            "Solo5 manifest is invalid: no entries (entry 0 is required)"
        );
    }

    #[test]
    fn manifest_with_devices() {
        let image = Image::hvt().with_devices(&[("disk", 1), ("net0", 2), ("net1", 2)]);
        let plan = parse(&image.build(), MEM).unwrap();
        let names: Vec<&str> = plan
            .manifest
            .devices()
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["disk", "net0", "net1"]);
        assert_eq!(plan.manifest.find("net1").unwrap().handle, 3);
    }

    #[test]
    fn sturdy_note_absent_or_valid() {
        assert_eq!(parse(&Image::hvt().build(), MEM).unwrap().sturdy, None);
        let plan = parse(&Image::hvt().with_sturdy(1, FLAG_DEPRIVILEGED).build(), MEM).unwrap();
        assert_eq!(
            plan.sturdy,
            Some(SturdyInfo {
                version: 1,
                flags: FLAG_DEPRIVILEGED
            })
        );
        let mut image = Image::hvt();
        image.parts.insert(0, Part::Note(sturdy_deprivileged()));
        assert_eq!(
            parse(&image.build(), MEM).unwrap().sturdy,
            Some(SturdyInfo {
                version: 1,
                flags: 1
            })
        );
        let plan = parse(&Image::hvt().with_sturdy(1, 0).build(), MEM).unwrap();
        assert_eq!(
            plan.sturdy,
            Some(SturdyInfo {
                version: 1,
                flags: 0
            })
        );
    }

    #[test]
    fn notes_that_look_like_sturdy_but_are_not() {
        // Matched on n_namesz 7, the name "sturdy\0" and the type; anything else is someone
        // else's note and is ignored.
        let mut n = sturdy_note(5, 0xff);
        put_u32(&mut n, 0, 6);
        let mut image = Image::hvt();
        image.parts.push(Part::Note(n));
        let mut n = sturdy_note(5, 0xff);
        n[12..19].copy_from_slice(b"sturdY\0");
        image.parts.push(Part::Note(n));
        let mut n = sturdy_note(5, 0xff);
        put_u32(&mut n, 8, STURDY_NOTE_TYPE + 1);
        image.parts.push(Part::Note(n));
        image.parts.push(Part::Note(
            note(b"sturdy\0", STURDY_NOTE_TYPE, 4, &[])
                .into_iter()
                .take(16)
                .collect(),
        ));
        assert_eq!(parse(&image.build(), MEM).unwrap().sturdy, None);
    }

    #[test]
    fn sturdy_note_malformed() {
        assert_eq!(
            err(&Image::hvt().with_sturdy(2, 1).build()),
            "invalid executable: malformed sturdy note: version 2, expected 1 (program header 8)"
        );
        assert_eq!(
            err(&Image::hvt().with_sturdy(1, 0x8000_0001).build()),
            "invalid executable: malformed sturdy note: unknown flags 0x80000000 (program header 8)"
        );
        let image = Image::hvt().with_sturdy(1, 1);
        assert_eq!(
            err(&with_descsz(&image, STURDY, 4)),
            "invalid executable: malformed sturdy note: n_descsz 4, expected 8 (program header 8)"
        );
        assert_eq!(
            err(&with_descsz(&image, STURDY, 12)),
            "invalid executable: malformed sturdy note: n_descsz 12, expected 8 (program header 8)"
        );
        let mut f = image.build();
        put_u64(&mut f, phdr_off(STURDY) + P_FILESZ, 27);
        assert_eq!(
            err(&f),
            "invalid executable: malformed sturdy note: truncated, p_filesz 27 < 28 for n_descsz 8 (program header 8)"
        );
        // At the end of the file, cut inside its descriptor.
        let f = image.build();
        assert_eq!(
            err(&f[..f.len() - 1]),
            "invalid executable: malformed sturdy note: descriptor lies past the end of the file (program header 8)"
        );
    }
}
