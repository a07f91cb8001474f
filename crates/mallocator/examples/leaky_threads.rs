//! Four threads allocate blocks and send most of them to the main
//! thread, which frees them (blocks freed on another thread than the one
//! that allocated them); a fixed set of blocks is leaked, both on the
//! allocating threads and after crossing to the main thread, so the
//! leaks are the same in every run whatever the scheduling.
//!
//! ```text
//! MALLOCATOR_LEAKS=stderr cargo run -p mallocator --example leaky_threads
//! ```

#[path = "alloc_switch/mod.rs"]
mod alloc_switch;

#[global_allocator]
static GLOBAL: alloc_switch::Switch = alloc_switch::Switch::new();

use std::sync::mpsc;

/// Allocates 200 blocks; leaks every 40th, sends the others.
#[inline(never)]
fn worker(id: u8, tx: mpsc::Sender<Box<[u8]>>) -> Vec<u64> {
    for i in 0..200usize {
        let block = vec![id; 32 + i % 17].into_boxed_slice();
        if i % 40 == 0 {
            Box::leak(block);
        } else {
            tx.send(block).expect("main thread receives");
        }
    }
    (0..u64::from(id) * 10).collect()
}

/// Frees what arrives, except blocks of 40 bytes from thread 2.
#[inline(never)]
fn consume(rx: mpsc::Receiver<Box<[u8]>>) -> usize {
    let mut received = 0;
    for block in rx {
        received += 1;
        if block.len() == 40 && block[0] == 2 {
            std::mem::forget(block);
        }
    }
    received
}

fn main() {
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..4u8)
        .map(|id| {
            let tx = tx.clone();
            std::thread::spawn(move || worker(id, tx))
        })
        .collect();
    drop(tx);
    // Join first, then drain: the channel is then disconnected, so `recv`
    // never blocks. A blocking `recv` makes std allocate a per-thread wait
    // context that the main thread never frees (its TLS destructors do not
    // run at exit), and whether it blocks depends on scheduling: the leaks
    // would differ from run to run.
    let mut results = 0;
    for h in handles {
        results += h.join().expect("worker finished").len();
    }
    let received = consume(rx);
    eprintln!("leaky_threads: received {received} blocks, {results} results");
}
