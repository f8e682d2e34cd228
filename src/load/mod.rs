//! Capacity testing: how many purchases a second the stack sustains on its
//! database, against what the database alone sustains.

pub mod pgbench;
