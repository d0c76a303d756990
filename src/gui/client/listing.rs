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
    /// The selected entry's name: the cursor (where a shift-click or shift+arrow range
    /// starts, when none is being made).
    pub selected: Option<String>,
    /// Where the range being made with shift started; the cursor is its other end.
    anchor: Option<String>,
    /// Several entries chosen at once (ctrl/cmd-click, shift-click, select all), in entry
    /// order; empty when one entry (`selected`) is all that is chosen.
    pub chosen: Vec<usize>,
}

impl Listing {
    pub fn new(reply: ListReply) -> Self {
        let lower = reply.entries.iter().map(|e| e.name.to_lowercase()).collect();
        Listing {
            path: reply.path,
            entries: reply.entries,
            lower,
            view: Vec::new(),
            view_of: None,
            selected: None,
            anchor: None,
            chosen: Vec::new(),
        }
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

    /// Whether the entry `idx` is selected (the cursor, or one of several chosen).
    pub fn is_selected(&self, idx: usize) -> bool {
        if self.chosen.is_empty() {
            self.selected.as_deref() == Some(self.entries[idx].name.as_str())
        } else {
            self.chosen.binary_search(&idx).is_ok()
        }
    }

    /// Ctrl/cmd-click: adds the entry `idx` to the chosen ones, or takes it out (the entry
    /// selected before counts as chosen); it becomes the cursor.
    pub fn toggle(&mut self, idx: usize) {
        if self.chosen.is_empty()
            && let Some(row) = self.selected_row()
        {
            self.chosen.push(self.view[row]);
        }
        match self.chosen.binary_search(&idx) {
            Ok(at) => {
                self.chosen.remove(at);
            }
            Err(at) => self.chosen.insert(at, idx),
        }
        self.selected = Some(self.entries[idx].name.clone());
        self.anchor = None;
    }

    /// Shift-click: chooses the visible rows from the anchor (where the range started: the
    /// cursor when none is being made) to the entry `idx`, which becomes the cursor.
    pub fn extend_to(&mut self, idx: usize) {
        let Some(target) = self.view.iter().position(|&i| i == idx) else { return };
        let anchor = self.anchor.clone().filter(|_| !self.chosen.is_empty()).or_else(|| self.selected.clone());
        let from = anchor.as_deref().and_then(|a| self.view.iter().position(|&i| self.entries[i].name == a));
        let from = from.unwrap_or(target);
        let (lo, hi) = if from <= target { (from, target) } else { (target, from) };
        let mut chosen: Vec<usize> = self.view[lo..=hi].to_vec();
        chosen.sort_unstable();
        self.chosen = chosen;
        self.anchor = anchor.or_else(|| Some(self.entries[idx].name.clone()));
        self.selected = Some(self.entries[idx].name.clone());
    }

    /// Shift+↑/↓: moves the cursor `delta` visible rows, choosing the rows from the anchor to
    /// it (as a shift-click there would); returns the entry index of the cursor.
    pub fn extend_by(&mut self, delta: isize) -> Option<usize> {
        let Some(row) = self.selected_row() else { return self.move_selection(delta) };
        let to = (row as isize + delta).clamp(0, self.view.len() as isize - 1) as usize;
        let idx = self.view[to];
        self.extend_to(idx);
        Some(idx)
    }

    /// Select all: every visible row.
    pub fn choose_all(&mut self) {
        let mut chosen = self.view.clone();
        chosen.sort_unstable();
        self.chosen = chosen;
        self.anchor = None;
    }

    /// Back to one selected entry.
    pub fn clear_chosen(&mut self) {
        self.chosen.clear();
        self.anchor = None;
    }

    /// The entries chosen together, when there are at least two.
    pub fn chosen_entries(&self) -> Option<Vec<&Entry>> {
        (self.chosen.len() >= 2).then(|| self.chosen.iter().map(|&i| &self.entries[i]).collect())
    }

    /// The selected entry, if it is a file.
    pub fn selected_file(&self) -> Option<&Entry> {
        let name = self.selected.as_deref()?;
        self.entries.iter().find(|e| e.name == name && e.kind == EntryKind::File)
    }

    /// The selected entry, if it is a folder.
    pub fn selected_folder(&self) -> Option<&Entry> {
        let name = self.selected.as_deref()?;
        self.entries.iter().find(|e| e.name == name && e.kind == EntryKind::Dir)
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
        self.anchor = None;
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
    fn ctrl_click_shift_click_and_select_all_choose_several() {
        let mut l = listing(["a", "b", "c", "d", "e"].iter().map(|n| entry(n, EntryKind::File, 1, 0)).collect());
        l.update_view("", Sort::default());
        l.selected = Some("b".into());
        assert!(l.chosen_entries().is_none(), "one selected entry is not a choice of several");
        l.toggle(3); // ctrl-click d: b and d
        let names = |l: &Listing| l.chosen_entries().unwrap().iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&l), ["b", "d"]);
        assert!(l.is_selected(1) && l.is_selected(3) && !l.is_selected(2));
        l.toggle(1); // ctrl-click b again: out, and b is the cursor
        assert!(l.chosen_entries().is_none() && l.is_selected(3) && !l.is_selected(1));
        l.extend_to(4); // shift-click e, from the cursor b: b..e
        assert_eq!(names(&l), ["b", "c", "d", "e"]);
        l.extend_to(0); // and to a: a..b, from the same anchor
        assert_eq!(names(&l), ["a", "b"]);
        assert_eq!(l.selected.as_deref(), Some("a"), "the shift-clicked row is the cursor");
        l.extend_by(1); // shift+down: the cursor to b, the range b alone
        assert_eq!(l.chosen, [1], "{:?}", l.chosen);
        assert!(l.chosen_entries().is_none(), "one entry is not a choice of several");
        l.extend_by(2); // shift+down twice more: b..d
        assert_eq!(names(&l), ["b", "c", "d"]);
        l.extend_by(9); // clamped at the last row: b..e
        assert_eq!(names(&l), ["b", "c", "d", "e"]);
        l.move_selection(-1); // a plain arrow starts over: the next range starts at d
        l.clear_chosen();
        l.extend_by(-1);
        assert_eq!(names(&l), ["c", "d"]);
        l.update_view("", Sort { key: SortKey::Name, descending: true });
        l.choose_all();
        assert_eq!(names(&l), ["a", "b", "c", "d", "e"], "in entry order whatever the view's");
        l.clear_chosen();
        assert!(l.chosen_entries().is_none());
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
