//! The simulator's agenda: events ordered by virtual time, ties broken by the
//! order they were scheduled in (so the run never depends on heap internals).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Millis;

struct Scheduled<E> {
    at: Millis,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    /// Reversed: the heap's top is the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub struct Agenda<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
}

impl<E> Agenda<E> {
    pub fn new() -> Self {
        Agenda { heap: BinaryHeap::new(), seq: 0 }
    }

    pub fn schedule(&mut self, at: Millis, event: E) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, event });
    }

    /// The next event at or before `until`, with its time.
    pub fn pop_until(&mut self, until: Millis) -> Option<(Millis, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        self.heap.pop().map(|scheduled| (scheduled.at, scheduled.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_fifo() {
        let mut agenda = Agenda::new();
        agenda.schedule(5, "b");
        agenda.schedule(1, "a");
        agenda.schedule(5, "c");
        agenda.schedule(9, "d");
        let order: Vec<_> = std::iter::from_fn(|| agenda.pop_until(8)).collect();
        assert_eq!(order, vec![(1, "a"), (5, "b"), (5, "c")]);
        assert_eq!(agenda.pop_until(100), Some((9, "d")));
    }
}
