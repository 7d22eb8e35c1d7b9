//! Planning a run: which source files need work, in what order, and which are done,
//! given up or refused. Pure functions over a listing and a state, so they are easy to test.

use std::collections::{BTreeSet, HashSet};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::source::{Listing, SourceEntry};
use crate::state::{InProgress, State};

/// Include and exclude globs over relative paths (`**/*.jpg`, `raw/**`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// Folders (relative paths) left out with everything under them, whatever the globs
    /// say: a store that lies inside its own source.
    subtrees: Vec<String>,
}

impl Filter {
    /// Builds a filter; an empty include list includes everything.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        fn build(globs: &[String], flag: &str) -> Result<Option<GlobSet>, String> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for g in globs {
                let glob = globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .or_else(|_| Glob::new(g))
                    .map_err(|e| format!("{flag} {g:?} is not a valid glob: {e}"))?;
                b.add(glob);
            }
            b.build().map(Some).map_err(|e| e.to_string())
        }
        Ok(Filter {
            include: build(include, "--include")?,
            exclude: build(exclude, "--exclude")?,
            subtrees: Vec::new(),
        })
    }

    /// Also leaves out the folder `dir` (relative to the source) and everything under it.
    pub fn without_subtree(mut self, dir: &str) -> Self {
        self.subtrees.push(dir.trim_end_matches('/').to_owned());
        self
    }

    /// Whether `path` takes part in the run.
    pub fn matches(&self, path: &str) -> bool {
        let in_subtree = self.subtrees.iter().any(|dir| {
            path.strip_prefix(dir.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        !in_subtree
            && self.include.as_ref().is_none_or(|g| g.is_match(path))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(path))
    }
}

/// The order files are worked on (resumed files always come first, failed ones last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By path.
    #[default]
    Path,
    /// Smallest first: the most files per run.
    SmallFirst,
    /// Largest first.
    LargeFirst,
}

/// A file that needs work.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    /// The file as listed.
    pub entry: SourceEntry,
    /// Parts stored in earlier runs (resume at `parts.len()`).
    pub resume: Option<InProgress>,
    /// Whether it is stored already under an older version (it changed since).
    pub changed: bool,
}

/// The plan for one run.
#[derive(Debug, Default)]
pub struct Plan {
    /// Files to work on, in order.
    pub work: Vec<WorkItem>,
    /// In-progress entries that no longer match their file and must be dropped.
    pub stale_in_progress: Vec<String>,
    /// Refused entries that are new or whose reason changed.
    pub newly_refused: Vec<(String, String)>,
    /// Skipped entries that are no longer refused (or no longer in the run's filter).
    pub no_longer_refused: Vec<String>,
    /// Failure entries of files that are gone from the source or the filter.
    pub failures_gone: Vec<String>,
    /// Files in the source after filters.
    pub files_total: u64,
    /// Their bytes.
    pub bytes_total: u64,
    /// Unchanged files already stored.
    pub files_done: u64,
    /// Bytes already stored.
    pub bytes_done: u64,
    /// Files given up in earlier runs.
    pub given_up: Vec<String>,
}

/// Number of parts for `size` bytes cut at `part_size` (an empty file is one empty part).
pub fn parts_total(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size).max(1)
}

/// Compares a listing with the state.
pub fn plan(
    listing: &Listing,
    state: &State,
    filter: &Filter,
    order: Order,
    part_size: u64,
    vault: bool,
) -> Plan {
    let mut p = Plan::default();
    let mut resumed = Vec::new();
    let mut fresh = Vec::new();
    let mut retried = Vec::new();
    for e in listing.files.iter().filter(|e| filter.matches(&e.path)) {
        p.files_total += 1;
        p.bytes_total += e.size;
        let stored = state.completed.get(&e.path);
        if stored.is_some_and(|c| c.size == e.size && c.mtime == e.mtime) {
            p.files_done += 1;
            p.bytes_done += e.size;
            continue;
        }
        if state.failed.get(&e.path).is_some_and(|f| f.given_up) {
            p.given_up.push(e.path.clone());
            continue;
        }
        let resume = match state.in_progress.get(&e.path) {
            Some(ip)
                if ip.size == e.size
                    && ip.mtime == e.mtime
                    && ip.part_size == part_size
                    && ip.vault.is_some() == vault =>
            {
                p.bytes_done += ip.parts.iter().map(|x| x.len).sum::<u64>();
                Some(ip.clone())
            }
            Some(_) => {
                p.stale_in_progress.push(e.path.clone());
                None
            }
            None => None,
        };
        let item = WorkItem {
            entry: e.clone(),
            changed: stored.is_some(),
            resume,
        };
        if item.resume.is_some() {
            resumed.push(item);
        } else if state.failed.contains_key(&e.path) {
            retried.push(item);
        } else {
            fresh.push(item);
        }
    }
    // In-progress entries whose file is gone or filtered out are stale too.
    let listed: HashSet<&str> = listing.files.iter().map(|e| e.path.as_str()).collect();
    for path in state.in_progress.keys() {
        if !listed.contains(path.as_str()) || !filter.matches(path) {
            p.stale_in_progress.push(path.clone());
        }
    }
    for group in [&mut resumed, &mut fresh, &mut retried] {
        match order {
            Order::Path => group.sort_by(|a, b| a.entry.path.cmp(&b.entry.path)),
            Order::SmallFirst => group
                .sort_by(|a, b| (a.entry.size, &a.entry.path).cmp(&(b.entry.size, &b.entry.path))),
            Order::LargeFirst => group
                .sort_by(|a, b| (b.entry.size, &a.entry.path).cmp(&(a.entry.size, &b.entry.path))),
        }
    }
    p.work = resumed.into_iter().chain(fresh).chain(retried).collect();

    let refused: BTreeSet<&str> = listing.refused.iter().map(|(p, _)| p.as_str()).collect();
    for (path, reason) in listing.refused.iter().filter(|(p, _)| filter.matches(p)) {
        if state.skipped.get(path).is_none_or(|s| &s.reason != reason) {
            p.newly_refused.push((path.clone(), reason.clone()));
        }
    }
    p.no_longer_refused = state
        .skipped
        .keys()
        .filter(|k| !refused.contains(k.as_str()) || !filter.matches(k))
        .cloned()
        .collect();
    let errors: HashSet<&str> = listing.errors.iter().map(|(p, _)| p.as_str()).collect();
    p.failures_gone = state
        .failed
        .keys()
        .filter(|k| {
            !errors.contains(k.as_str()) && (!listed.contains(k.as_str()) || !filter.matches(k))
        })
        .cloned()
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Completed, Encryption, Failed, FailureKind, Job};
    use crate::time::Timestamp;

    fn entry(path: &str, size: u64, t: i64) -> SourceEntry {
        SourceEntry {
            path: path.into(),
            size,
            mtime: Timestamp::from_second(t).unwrap(),
        }
    }

    fn state() -> State {
        State::new(Job {
            source: "s".into(),
            store: "t".into(),
            encryption: Encryption::None,
            vault_id: None,
        })
    }

    #[test]
    fn a_subtree_left_out_takes_everything_under_it_and_nothing_beside_it() {
        let f = Filter::new(&[], &[])
            .unwrap()
            .without_subtree("backup/store/");
        for out in [
            "backup/store",
            "backup/store/a",
            "backup/store/.tgferry/lock",
        ] {
            assert!(!f.matches(out), "{out}");
        }
        for kept in ["backup/storex", "backup/a", "store/a", "backup"] {
            assert!(f.matches(kept), "{kept}");
        }
    }

    #[test]
    fn unchanged_files_are_done_changed_ones_redone() {
        let mut st = state();
        for (p, t) in [("a", 1), ("b", 1)] {
            st.completed.insert(
                p.into(),
                Completed {
                    size: 3,
                    mtime: Timestamp::from_second(t).unwrap(),
                    stored_at: Timestamp::from_second(9).unwrap(),
                    parts: vec![],
                    object: None,
                    versions: vec![],
                },
            );
        }
        let listing = Listing {
            files: vec![entry("a", 3, 1), entry("b", 3, 2), entry("c", 5, 1)],
            ..Default::default()
        };
        let p = plan(&listing, &st, &Filter::default(), Order::Path, 10, false);
        let todo: Vec<_> = p
            .work
            .iter()
            .map(|w| (w.entry.path.as_str(), w.changed))
            .collect();
        assert_eq!(todo, [("b", true), ("c", false)]);
        assert_eq!((p.files_done, p.bytes_done, p.bytes_total), (1, 3, 11));
    }

    #[test]
    fn order_and_groups() {
        let mut st = state();
        st.failed.insert(
            "a".into(),
            Failed {
                attempts: 1,
                tries: 1,
                last_error: "x".into(),
                kind: FailureKind::Transient,
                first_failed: Timestamp::UNIX_EPOCH,
                last_failed: Timestamp::UNIX_EPOCH,
                given_up: false,
            },
        );
        let mut gone = st.failed["a"].clone();
        gone.given_up = true;
        st.failed.insert("z".into(), gone);
        let listing = Listing {
            files: vec![
                entry("a", 1, 1),
                entry("b", 50, 1),
                entry("c", 5, 1),
                entry("z", 1, 1),
            ],
            ..Default::default()
        };
        let p = plan(
            &listing,
            &st,
            &Filter::default(),
            Order::SmallFirst,
            10,
            false,
        );
        let order: Vec<_> = p.work.iter().map(|w| w.entry.path.as_str()).collect();
        assert_eq!(order, ["c", "b", "a"], "failed last, given up left out");
        assert_eq!(p.given_up, ["z"]);
        let p = plan(
            &listing,
            &st,
            &Filter::default(),
            Order::LargeFirst,
            10,
            false,
        );
        let order: Vec<_> = p.work.iter().map(|w| w.entry.path.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
    }

    #[test]
    fn filters() {
        let f = Filter::new(&["**/*.jpg".into(), "top.txt".into()], &["raw/**".into()]).unwrap();
        assert!(f.matches("a/b/c.jpg"));
        assert!(f.matches("c.jpg"));
        assert!(f.matches("top.txt"));
        assert!(!f.matches("raw/c.jpg"));
        assert!(!f.matches("a/top.txt"));
        let err = Filter::new(&["a[".into()], &[]).unwrap_err();
        assert!(err.contains("--include"), "{err}");
    }

    #[test]
    fn part_counts() {
        assert_eq!(parts_total(0, 10), 1);
        assert_eq!(parts_total(10, 10), 1);
        assert_eq!(parts_total(11, 10), 2);
    }

    /// Filters see keys (docs/state.md, "Path keys"): in a glob a backslash escapes the
    /// next character, so `\\` in a pattern is the `\` of a key's escapes.
    #[test]
    fn filters_match_keys_with_their_escapes() {
        let f = Filter::new(&[r"caf\\xe9.txt".into(), r"a\\\\b.txt".into()], &[]).unwrap();
        assert!(f.matches(r"caf\xe9.txt"), "the Latin-1 name");
        assert!(f.matches(r"a\\b.txt"), "the name with a backslash");
        assert!(
            !f.matches(r"caf\\xe9.txt"),
            "a real backslash is another name"
        );
        assert!(!f.matches("café.txt"));
        let any = Filter::new(&["**/*.txt".into()], &[]).unwrap();
        assert!(any.matches(r"d\xff/caf\xe9.txt"));
    }
}
