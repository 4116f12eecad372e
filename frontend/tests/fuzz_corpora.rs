//! The fuzz targets on the stable toolchain (CI has no nightly, so no
//! cargo-fuzz): every committed seed and corpus file of every target, then
//! a few thousand deterministic mutations of them, through the very functions
//! the targets call (their files are included below). A panic (a crash
//! or a broken invariant the targets assert) fails the test and names the
//! input. The real fuzzing is scripts/fuzz.sh (docs/FUZZING.md).

#[path = "../fuzz/src/lib.rs"]
mod frontend_targets;
#[path = "../../protocol/fuzz/src/lib.rs"]
mod protocol_targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

struct Target {
    name: &'static str,
    /// The fuzz crate, relative to this crate (frontend/): its `seeds/`
    /// (realistic inputs, kept as they are) and `corpus/` (minimised).
    fuzz_dir: &'static str,
    run: fn(&[u8]),
    /// Pieces of its input format that mutations splice in.
    tokens: &'static [&'static [u8]],
}

const TARGETS: &[Target] = &[
    Target {
        name: "form",
        fuzz_dir: "fuzz",
        run: frontend_targets::form,
        tokens: &[
            b"&", b"=", b"+", b"%", b"%2", b"%C3%A9", b"%00", b"%ff", b"task=", b"user=", b"/uccs/",
            b"/api/", b"Basic ",
        ],
    },
    Target {
        name: "profiles",
        fuzz_dir: "fuzz",
        run: frontend_targets::profiles,
        tokens: &[
            b"\n",
            b"\n[",
            b"]\n",
            b"[DEFAULT]\n",
            b" = ",
            b"\n  ",
            b",",
            b"host = a (10.0.0.1:22), b.example.org (::1)\n",
            b"command = SHADOW\n",
            b"directrdp = true\n",
            b"sshport = not-set\n",
            b"user = BROKER_USER\n",
            b"acl-clients-allow = 127.0.0.0/8\n",
            b"acl-users-deny = ALL\n",
            b"\xc3\xa9",
        ],
    },
    Target {
        name: "agent_answer",
        fuzz_dir: "fuzz",
        run: frontend_targets::agent_answer,
        tokens: &[
            b"OK\n",
            b"\n",
            b"|",
            b"|R|",
            b"|S|",
            b":",
            b" ",
            b".example.org",
            b"10.0.0.1",
            b"-1",
            b"1e309",
        ],
    },
    Target {
        name: "decode",
        fuzz_dir: "../protocol/fuzz",
        run: protocol_targets::decode,
        tokens: &[b"\0", b"\x01", b"\xff", b"\xfb", b"\xfc", b"\xfd"],
    },
];

/// The target's files in `kind` (`seeds` or `corpus`).
fn files(target: &Target, kind: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(target.fuzz_dir)
        .join(kind)
        .join(target.name);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect();
    files.sort();
    files
}

/// Seeds and corpus files of a target.
fn corpus(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let seeds = files(target, "seeds");
    let corpus = files(target, "corpus");
    assert!(seeds.len() >= 10, "{}: only {} seeds", target.name, seeds.len());
    assert!(
        corpus.len() >= 10,
        "{}: only {} corpus files",
        target.name,
        corpus.len()
    );
    seeds.into_iter().chain(corpus).collect()
}

/// Runs one input; the panic message, if any.
fn failure(target: &Target, data: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(data)))
        .err()
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        })
}

#[test]
fn every_seed_and_corpus_file_passes_its_target() {
    for target in TARGETS {
        let files = corpus(target);
        let failed: Vec<String> = files
            .iter()
            .filter_map(|(path, data)| failure(target, data).map(|m| format!("{}: {m}", path.display())))
            .collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", target.name);
    }
}

/// xorshift64*: deterministic, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four byte-level edits of `data`: flips, overwrites, deletions,
/// insertions of random bytes or of the target's tokens, duplicated
/// ranges, truncation, splicing in another input.
fn mutate(rng: &mut Rng, data: &[u8], tokens: &[&[u8]], other: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            4 | 5 => {
                let token = tokens[rng.below(tokens.len())];
                v.splice(at..at, token.iter().copied());
            }
            6 if at < v.len() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let piece = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, piece);
            }
            7 if !other.is_empty() => {
                let from = rng.below(other.len());
                let piece = &other[from..(from + 1 + rng.below(128)).min(other.len())];
                v.splice(at..at, piece.iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v
}

const MUTATIONS_PER_TARGET: usize = 5000;

#[test]
fn mutated_seeds_and_corpus_files_pass_their_targets() {
    for (seed, target) in TARGETS.iter().enumerate() {
        let files = corpus(target);
        assert!(!files.is_empty(), "{}: empty corpus", target.name);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed as u64);
        let mut changed = 0;
        for _ in 0..MUTATIONS_PER_TARGET {
            let (_, data) = &files[rng.below(files.len())];
            let (_, other) = &files[rng.below(files.len())];
            let mutant = mutate(&mut rng, data, target.tokens, other);
            changed += usize::from(mutant != *data);
            if let Some(message) = failure(target, &mutant) {
                panic!(
                    "{}: mutant {:?} fails: {message}",
                    target.name,
                    String::from_utf8_lossy(&mutant)
                );
            }
        }
        // The pass must really vary its inputs.
        assert!(
            changed > MUTATIONS_PER_TARGET * 9 / 10,
            "{}: {changed} changed",
            target.name
        );
    }
}

#[test]
fn mutations_are_deterministic_and_varied() {
    let run = || {
        let mut rng = Rng(7);
        (0..50)
            .map(|_| mutate(&mut rng, b"task=listsessions&user=xbt-alice", &[b"%"], b"x=y"))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    let distinct: std::collections::BTreeSet<&Vec<u8>> = first.iter().collect();
    assert!(distinct.len() > 40, "{distinct:?}");
}

/// The entry functions' own checks can fail: a broken invariant panics.
#[test]
fn a_broken_invariant_is_caught() {
    let target = Target {
        name: "self-test",
        fuzz_dir: "",
        run: |data| assert!(!data.contains(&b'!'), "an exclamation mark"),
        tokens: &[],
    };
    assert_eq!(failure(&target, b"fine"), None);
    assert_eq!(failure(&target, b"bad!").as_deref(), Some("an exclamation mark"));
}
