//! The listing model: one folder's entries as the browser shows them, folders first, in the
//! order the person picked (natural, case-insensitive names; size; date), narrowed by the
//! filter, with the selected entry. No drawing here.

use std::cmp::Ordering;

use crate::protocol::message::{Entry, EntryKind, ListReply};

/// The column the listing is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortKey {
    #[default]
    Name,
    Size,
    Modified,
}

/// The order of the listing: a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Sort {
    /// What clicking `key`'s header does: the same column flips direction, another starts
    /// ascending.
    pub fn clicked(self, key: SortKey) -> Sort {
        if self.key == key { Sort { key, descending: !self.descending } } else { Sort { key, descending: false } }
    }
}

/// One folder of the host, and the view of it the person is looking at.
pub(crate) struct Listing {
    pub path: String,
    pub entries: Vec<Entry>,
    /// Lower-cased names, for the filter.
    lower: Vec<String>,
    /// Indices of the entries that pass the filter, in display order.
    view: Vec<usize>,
    /// The filter and order `view` was computed for.
    view_of: Option<(String, Sort)>,
    /// The selected entry's name.
    pub selected: Option<String>,
}

impl Listing {
    pub fn new(reply: ListReply) -> Self {
        let lower = reply.entries.iter().map(|e| e.name.to_lowercase()).collect();
        Listing { path: reply.path, entries: reply.entries, lower, view: Vec::new(), view_of: None, selected: None }
    }

    /// Recomputes the visible rows if the filter or the order changed.
    pub fn update_view(&mut self, filter: &str, sort: Sort) {
        let filter = filter.trim().to_lowercase();
        if self.view_of.as_ref().is_some_and(|(f, s)| *f == filter && *s == sort) {
            return;
        }
        let mut view: Vec<usize> = (0..self.entries.len()).filter(|&i| self.lower[i].contains(&filter)).collect();
        view.sort_by(|&a, &b| compare(&self.entries[a], &self.entries[b], sort));
        self.view = view;
        self.view_of = Some((filter, sort));
    }

    /// The visible rows as indices into `entries`.
    pub fn view(&self) -> &[usize] {
        &self.view
    }

    /// Where the selected entry is among the visible rows.
    pub fn selected_row(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.view.iter().position(|&i| self.entries[i].name == name)
    }

    /// The selected entry, if it is a file.
    pub fn selected_file(&self) -> Option<&Entry> {
        let name = self.selected.as_deref()?;
        self.entries.iter().find(|e| e.name == name && e.kind == EntryKind::File)
    }

    /// Selects the visible row `delta` rows away from the selected one (the first or last when
    /// nothing is selected); returns the entry index now selected.
    pub fn move_selection(&mut self, delta: isize) -> Option<usize> {
        if self.view.is_empty() {
            return None;
        }
        let last = self.view.len() as isize - 1;
        let row = match self.selected_row() {
            Some(r) => (r as isize + delta).clamp(0, last),
            None if delta < 0 => last,
            None => 0,
        };
        let idx = self.view[row as usize];
        self.selected = Some(self.entries[idx].name.clone());
        Some(idx)
    }
}

/// Folders first, then files, then anything else; within each, by `sort`. Ties fall back to
/// the name so the order never depends on how the host listed them.
fn compare(a: &Entry, b: &Entry, sort: Sort) -> Ordering {
    let rank = |k: EntryKind| match k {
        EntryKind::Dir => 0,
        EntryKind::File => 1,
        EntryKind::Other => 2,
    };
    let by_name = || natural_cmp(&a.name, &b.name);
    let within = match sort.key {
        SortKey::Name => by_name(),
        SortKey::Size => a.size.cmp(&b.size).then_with(by_name),
        SortKey::Modified => a.modified.cmp(&b.modified).then_with(by_name),
    };
    rank(a.kind).cmp(&rank(b.kind)).then(if sort.descending { within.reverse() } else { within })
}

/// Compares names as people read them: case-insensitively, with runs of digits compared as
/// numbers (`f2` before `f10`). Names equal that way are ordered by their bytes, so two distinct
/// names never compare equal.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let take_digits = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut run = String::new();
                    while let Some(c) = it.next_if(char::is_ascii_digit) {
                        run.push(c);
                    }
                    run
                };
                let (m, n) = (take_digits(&mut x), take_digits(&mut y));
                let (m, n) = (m.trim_start_matches('0'), n.trim_start_matches('0'));
                let order = m.len().cmp(&n.len()).then_with(|| m.cmp(n));
                if order != Ordering::Equal {
                    return order;
                }
            }
            (Some(c), Some(d)) => {
                let order = c.to_lowercase().cmp(d.to_lowercase());
                if order != Ordering::Equal {
                    return order;
                }
                x.next();
                y.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind, size: u64, modified: i64) -> Entry {
        Entry { name: name.into(), kind, size: Some(size), modified: Some(modified), md5: None }
    }

    fn listing(entries: Vec<Entry>) -> Listing {
        Listing::new(ListReply { path: String::new(), entries })
    }

    fn names(l: &Listing) -> Vec<&str> {
        l.view().iter().map(|&i| l.entries[i].name.as_str()).collect()
    }

    #[test]
    fn names_sort_naturally_and_case_insensitively() {
        let mut l = listing(
            ["f10", "f2", "F1", "docs", "Photos 2024", "many", "f02b", "a"]
                .iter()
                .map(|n| entry(n, EntryKind::File, 1, 0))
                .collect(),
        );
        l.update_view("", Sort::default());
        assert_eq!(names(&l), ["a", "docs", "F1", "f2", "f02b", "f10", "many", "Photos 2024"]);
    }

    #[test]
    fn natural_order_is_total_for_names_that_read_alike() {
        assert_eq!(natural_cmp("f2", "f02"), "f2".cmp("f02"));
        assert_ne!(natural_cmp("a", "A"), Ordering::Equal);
        assert_eq!(natural_cmp("x9", "x10"), Ordering::Less);
        assert_eq!(natural_cmp("x99999999999999999999999", "x100000000000000000000000"), Ordering::Less);
    }

    #[test]
    fn folders_stay_first_in_either_direction_of_every_column() {
        let mut l = listing(vec![
            entry("small", EntryKind::File, 1, 30),
            entry("Zeta", EntryKind::Dir, 0, 10),
            entry("big", EntryKind::File, 900, 20),
            entry("alpha", EntryKind::Dir, 0, 40),
        ]);
        let cases = [
            (SortKey::Name, false, ["alpha", "Zeta", "big", "small"]),
            (SortKey::Name, true, ["Zeta", "alpha", "small", "big"]),
            (SortKey::Size, false, ["alpha", "Zeta", "small", "big"]),
            (SortKey::Size, true, ["Zeta", "alpha", "big", "small"]),
            (SortKey::Modified, false, ["Zeta", "alpha", "big", "small"]),
            (SortKey::Modified, true, ["alpha", "Zeta", "small", "big"]),
        ];
        for (key, descending, expected) in cases {
            l.update_view("", Sort { key, descending });
            assert_eq!(names(&l), expected, "{key:?} descending={descending}");
        }
    }

    #[test]
    fn a_header_clicked_twice_reverses_and_another_starts_ascending() {
        let s = Sort::default().clicked(SortKey::Name);
        assert_eq!(s, Sort { key: SortKey::Name, descending: true });
        assert_eq!(s.clicked(SortKey::Size), Sort { key: SortKey::Size, descending: false });
    }

    #[test]
    fn the_filter_is_case_insensitive_and_selection_moves_within_it() {
        let mut l = listing(vec![
            entry("b.txt", EntryKind::File, 1, 0),
            entry("Zeta", EntryKind::Dir, 0, 0),
            entry("a.TXT", EntryKind::File, 1, 0),
        ]);
        l.update_view("", Sort::default());
        assert_eq!(names(&l), ["Zeta", "a.TXT", "b.txt"]);
        l.update_view(" txt ", Sort::default());
        assert_eq!(names(&l), ["a.TXT", "b.txt"]);
        assert_eq!(l.move_selection(1).map(|i| l.entries[i].name.as_str()), Some("a.TXT"), "first row");
        l.move_selection(1);
        l.move_selection(1);
        assert_eq!(l.selected.as_deref(), Some("b.txt"), "stops at the last row");
        assert_eq!(l.selected_file().map(|e| e.name.as_str()), Some("b.txt"));
        l.move_selection(-5);
        assert_eq!(l.selected.as_deref(), Some("a.TXT"));
        l.update_view("", Sort::default());
        assert_eq!(l.selected_row(), Some(1));
    }
}
