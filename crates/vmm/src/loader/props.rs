//! Property tests: valid executables, mutated at random (byte flips, truncation, hostile values
//! aimed at header, program header, note and manifest fields, any guest memory size), never make
//! the loader panic, and whatever it accepts satisfies what the monitor relies on.

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use sturdy_abi::mft::mft_size;
use sturdy_abi::{get_u16, get_u32, get_u64, KERNEL_BASE};

use super::elf::{PF_R, PF_W, PF_X, PT_NOTE};
use super::image::*;
use super::{parse, LoadError, LoadPlan};

/// The valid executables the mutations start from.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut many = Image::hvt()
            .with_devices(&[("disk", 1), ("net0", 2), ("net1", 2), ("scratch", 1)])
            .with_sturdy(1, 1);
        let load = |vaddr, memsz, flags, align, len| Part::Load {
            vaddr,
            memsz,
            flags,
            align,
            data: vec![0x90; len],
        };
        many.parts.extend([
            load(0x20_0000, 0x1000, PF_R | PF_X, 0x1000, 0x80),
            load(0x20_1000, 0x3000, PF_R, 0x1000, 0x1000),
            load(0x40_0000, 0x10, PF_R | PF_W, 0x20_0000, 0x10),
        ]);
        let seeds = vec![Image::hvt().build(), many.build()];
        for s in &seeds {
            assert!(parse(s, 512 * MIB).is_ok(), "seed images are valid");
        }
        seeds
    })
}

/// Offset and width of every field worth aiming a hostile value at in `file` (a seed).
fn fields(file: &[u8]) -> Vec<(usize, usize)> {
    let mut f = vec![
        (4, 1),
        (5, 1),
        (16, 2),
        (18, 2),
        (20, 4),
        (24, 8),
        (32, 8),
        (52, 2),
        (54, 2),
        (56, 2),
    ];
    for i in 0..usize::from(get_u16(file, 56)) {
        let p = phdr_off(i);
        f.extend([
            (p, 4),
            (p + 4, 4),
            (p + 8, 8),
            (p + 16, 8),
            (p + 32, 8),
            (p + 40, 8),
            (p + 48, 8),
        ]);
        if get_u32(file, p) != PT_NOTE {
            continue;
        }
        // The note header, and the manifest header and entries if this is the MFT1 note.
        let n = get_u64(file, p + 8) as usize;
        f.extend([
            (n, 4),
            (n + 4, 4),
            (n + 8, 4),
            (n + 12, 8),
            (n + 20, 4),
            (n + 24, 4),
            (n + 28, 4),
        ]);
        if get_u32(file, n + 8) == sturdy_abi::note::MFT1_TYPE {
            let entries = get_u32(file, n + 28) as usize;
            for e in 0..entries {
                let e = n + 32 + 104 * e;
                f.extend([
                    (e, 8),
                    (e + 60, 8),
                    (e + 67, 1),
                    (e + 68, 4),
                    (e + 88, 8),
                    (e + 96, 1),
                ]);
            }
        }
    }
    f
}

fn put(file: &mut [u8], off: usize, width: usize, v: u64) {
    let bytes = v.to_le_bytes();
    file[off..off + width].copy_from_slice(&bytes[..width]);
}

/// Values that hit boundaries more often than uniformly random ones.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(KERNEL_BASE),
        (0u64..64).prop_map(|b| 1u64 << b),
        (0u64..64).prop_map(|b| (1u64 << b).wrapping_sub(1)),
        0u64..0x2000,
        KERNEL_BASE..KERNEL_BASE + 0x10_0000,
        (u64::MAX - 0x2000)..=u64::MAX,
    ]
}

fn mem_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(512 * MIB),
        Just(2 * MIB),
        0u64..0x100_0000,
        any::<u64>()
    ]
}

/// What the monitor relies on in an accepted plan.
fn check(plan: &LoadPlan, file_len: usize, mem_size: u64) -> Result<(), TestCaseError> {
    prop_assert!(plan.entry >= KERNEL_BASE && plan.entry < mem_size);
    prop_assert!(!plan.segments.is_empty());
    let mut prev: Option<&super::Segment> = None;
    for s in &plan.segments {
        prop_assert!(s.filesz > 0 && s.filesz <= s.memsz, "{s:?}");
        prop_assert!(
            s.file_offset
                .checked_add(s.filesz)
                .is_some_and(|e| e <= file_len as u64),
            "{s:?}"
        );
        prop_assert!(KERNEL_BASE <= s.start && s.start <= s.vaddr, "{s:?}");
        prop_assert!(
            s.vaddr.checked_add(s.memsz).is_some_and(|e| e <= s.end),
            "{s:?}"
        );
        prop_assert!(s.end <= mem_size, "{s:?}");
        prop_assert!(s.start & 0xfff == 0 && s.end & 0xfff == 0, "{s:?}");
        prop_assert!(!(s.write && s.exec), "{s:?}");
        if let Some(p) = prev {
            prop_assert!(p.end <= s.start && p.vaddr <= s.vaddr, "{p:?} then {s:?}");
        }
        prev = Some(s);
    }
    prop_assert_eq!(
        Some(plan.kernel_end),
        plan.segments.iter().map(|s| s.end).max()
    );

    let m = &plan.manifest;
    let devices = m.devices();
    prop_assert!(devices.len() <= 63);
    for (i, d) in devices.iter().enumerate() {
        prop_assert!(d.handle >= 1 && (i == 0 || devices[i - 1].handle < d.handle));
        prop_assert!(!d.name.is_empty() && d.name.len() <= 67);
        prop_assert!(d.name.bytes().all(|c| c.is_ascii_alphanumeric()));
        prop_assert_eq!(m.find(&d.name), Some(d));
        prop_assert!(!m.is_attached(d.handle));
    }
    let encoded = m.encode();
    let entries = encoded.len().saturating_sub(8) / 104;
    prop_assert!(entries >= 1 && encoded.len() == mft_size(entries));
    prop_assert!(encoded.len() <= mft_size(64));
    Ok(())
}

/// Runs the loader on `file`; on success checks the plan, on failure the message.
fn run(file: &[u8], mem_size: u64) -> Result<(), TestCaseError> {
    match parse(file, mem_size) {
        Ok(plan) => check(&plan, file.len(), mem_size),
        Err(e) => {
            let msg = e.to_string();
            let spec = match e {
                LoadError::Invalid(_) => msg.starts_with("invalid executable: ") && msg.len() > 24,
                LoadError::InvalidManifest(_) => msg.starts_with("Solo5 manifest is invalid: "),
                _ => true,
            };
            prop_assert!(spec, "unexpected message {:?}", msg);
            Ok(())
        }
    }
}

fn config(cases: u32) -> ProptestConfig {
    // No regression files in the source tree; a failure prints its minimal input.
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn byte_flips(seed in any::<Index>(), flips in prop::collection::vec((any::<Index>(), 1u8..), 1..8), mem in mem_size()) {
        let mut file = seed.get(seeds()).clone();
        for (at, x) in flips {
            let i = at.index(file.len());
            file[i] ^= x;
        }
        run(&file, mem)?;
    }

    #[test]
    fn field_overwrites(seed in any::<Index>(), writes in prop::collection::vec((any::<Index>(), value()), 1..4), mem in mem_size()) {
        let mut file = seed.get(seeds()).clone();
        let targets = fields(&file);
        for (at, v) in writes {
            let (off, width) = *at.get(&targets);
            put(&mut file, off, width, v);
        }
        run(&file, mem)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn truncation(seed in any::<Index>(), cut in any::<Index>(), mem in mem_size()) {
        let file = seed.get(seeds());
        let file = &file[..cut.index(file.len() + 1)];
        run(file, mem)?;
        // Only the whole file can be valid: its last bytes are a note or a segment.
        prop_assert!(file.len() == seed.get(seeds()).len() || parse(file, 512 * MIB).is_err());
    }

    #[test]
    fn any_memory_size(seed in any::<Index>(), mem in mem_size()) {
        // A valid executable fits exactly when memory reaches its kernel_end, and the plan does
        // not otherwise depend on the memory size.
        let file = seed.get(seeds());
        let reference = parse(file, u64::MAX).unwrap();
        match parse(file, mem) {
            Ok(plan) => {
                prop_assert!(mem >= reference.kernel_end);
                prop_assert_eq!(&plan.segments, &reference.segments);
                prop_assert_eq!(plan.kernel_end, reference.kernel_end);
                check(&plan, file.len(), mem)?;
            }
            Err(e) => {
                prop_assert!(mem < reference.kernel_end, "refused with {} bytes: {}", mem, e);
                prop_assert!(e.to_string().starts_with("invalid executable: "));
            }
        }
    }

    #[test]
    fn random_bytes_behind_a_valid_header(tail in prop::collection::vec(any::<u8>(), 0..600), mem in mem_size()) {
        let mut file = seeds()[0][..64].to_vec();
        file.extend(tail);
        run(&file, mem)?;
    }
}
