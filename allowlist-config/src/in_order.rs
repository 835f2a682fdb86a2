//! Walking the entries in network order. `by_net` scatters over `entries` (which stay in file
//! order), so a plain walk waits on a cache miss at nearly every step: with a million entries
//! the walks of a reload (the diff for its audit record, the rules for the maps) spent over
//! 100 ms there. Reading a block of entries ahead, in a loop whose loads do not wait on each
//! other, lets the CPU fetch them in parallel.

use super::Entry;

/// Entries read ahead at a time: enough to keep the CPU's outstanding misses busy, few
/// enough (two walks of 64 × 40 bytes) to stay in the first-level cache until used.
const BLOCK: usize = 64;

pub struct InOrder<'a> {
    order: &'a [u32],
    entries: &'a [Entry],
    next: usize,
    /// `order[..read_ahead]` have been touched.
    read_ahead: usize,
}

impl<'a> InOrder<'a> {
    pub fn new(order: &'a [u32], entries: &'a [Entry]) -> InOrder<'a> {
        InOrder {
            order,
            entries,
            next: 0,
            read_ahead: 0,
        }
    }
}

impl<'a> Iterator for InOrder<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        let &index = self.order.get(self.next)?;
        if self.next == self.read_ahead {
            self.read_ahead = (self.next + BLOCK).min(self.order.len());
            touch(self.entries, &self.order[self.next..self.read_ahead]);
        }
        self.next += 1;
        Some(&self.entries[index as usize])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.order.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for InOrder<'_> {}

/// Loads the start and end of each entry (40 bytes may straddle two cache lines); the
/// values are only kept from being optimised away.
fn touch(entries: &[Entry], order: &[u32]) {
    let mut sum = 0u32;
    for &index in order {
        let entry = &entries[index as usize];
        sum ^= u32::from(entry.net.prefix_len()) ^ entry.line;
    }
    std::hint::black_box(sum);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn yields_every_entry_in_the_given_order_across_blocks() {
        let file = Arc::new(PathBuf::from("list.txt"));
        let entries: Vec<Entry> = (0..3 * BLOCK as u32 + 5)
            .map(|line| Entry {
                net: format!("198.18.{}.{}/32", line / 256, line % 256)
                    .parse()
                    .unwrap(),
                comment: arcstr::literal!(""),
                file: Arc::clone(&file),
                line,
                list: 0,
            })
            .collect();
        // A scrambled order, as file order against network order would be.
        let n = entries.len() as u32;
        let order: Vec<u32> = (0..n).map(|i| (i * 37) % n).collect();
        let walked: Vec<u32> = InOrder::new(&order, &entries).map(|e| e.line).collect();
        assert_eq!(walked, order);
        assert_eq!(InOrder::new(&order, &entries).len(), order.len());
        assert_eq!(InOrder::new(&[], &entries).next().map(|e| e.line), None);
    }
}
