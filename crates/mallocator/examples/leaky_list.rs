//! A linked list program that leaks, deterministically: 25 list nodes
//! (one forgotten list), one 64-entry table, a configuration block a
//! static still points to, and a block only a pointer into its middle
//! refers to. Valgrind and the tracker's exit report classify them alike:
//! the list as one "definitely lost" head plus 24 "indirectly lost"
//! nodes, the table "definitely lost", the configuration "still
//! reachable", the last block "possibly lost".
//!
//! ```text
//! MALLOCATOR_LEAKS=stderr cargo run -p mallocator --example leaky_list
//! ```

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[path = "alloc_switch/mod.rs"]
mod alloc_switch;

#[global_allocator]
static GLOBAL: alloc_switch::Switch = alloc_switch::Switch::new();

struct Node {
    value: u64,
    payload: [u8; 40],
    next: Option<Box<Node>>,
}

/// Allocates one node in front of `head`.
#[inline(never)]
fn push_front(head: Option<Box<Node>>, value: u64) -> Box<Node> {
    Box::new(Node {
        value,
        payload: [value as u8; 40],
        next: head,
    })
}

#[inline(never)]
fn build_list(len: u64) -> Option<Box<Node>> {
    let mut head = None;
    for v in 0..len {
        head = Some(push_front(head, v));
    }
    head
}

#[inline(never)]
fn sum(mut list: &Option<Box<Node>>) -> u64 {
    let mut total = 0;
    while let Some(node) = list {
        total += node.value + u64::from(node.payload[0]);
        list = &node.next;
    }
    total
}

/// Frees a list node by node (no deep recursion in `Drop`).
#[inline(never)]
fn free_list(mut list: Option<Box<Node>>) {
    while let Some(mut node) = list {
        list = node.next.take();
    }
}

#[inline(never)]
fn make_table(len: usize) -> Vec<u64> {
    let mut table = Vec::with_capacity(len);
    for i in 0..len as u64 {
        table.push(i * i);
    }
    table
}

/// The configuration, kept for the whole run: still reachable at exit.
static CONFIG: AtomicPtr<[u8; 96]> = AtomicPtr::new(std::ptr::null_mut());
/// A cursor into the middle of a block: the block is only possibly lost.
static CURSOR: AtomicUsize = AtomicUsize::new(0);

#[inline(never)]
fn load_config() {
    CONFIG.store(Box::into_raw(Box::new([7u8; 96])), Ordering::Relaxed);
}

#[inline(never)]
fn make_cursor() {
    let block = Box::into_raw(Box::new([0u64; 8]));
    CURSOR.store(block as usize + 16, Ordering::Relaxed);
}

fn main() {
    load_config();
    make_cursor();
    let kept = build_list(100);
    let total = sum(&kept);
    free_list(kept);

    let lost = build_list(25);
    let lost_total = sum(&lost);
    std::mem::forget(lost);

    let table: &'static mut [u64] = make_table(64).leak();
    // Read back, so that an optimised build keeps the statics (and the
    // blocks stay reachable through them).
    // SAFETY: `load_config` stored a live, never-freed box there.
    let config = unsafe { (*CONFIG.load(Ordering::Relaxed))[0] };
    assert_eq!((config, CURSOR.load(Ordering::Relaxed) % 16), (7, 0));
    eprintln!(
        "leaky_list: sums {total} and {lost_total}; leaked 25 nodes of {} bytes and a table of {} bytes",
        std::mem::size_of::<Node>(),
        std::mem::size_of_val(table)
    );
}
