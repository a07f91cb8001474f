//! Every handle is an `allocator_api2::alloc::Allocator`: collections from
//! allocator-api2 and hashbrown work with the libc handle, custom handles
//! (shared and local) and fail cleanly with the null handle.

mod common;

use core::alloc::Layout;

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;
use common::{Recorder, Unsync};
use hashbrown::HashMap;
use mallocator::{Sharing, Valloc};

/// Enough elements to force several reallocations, few enough for Miri.
const N: usize = if cfg!(miri) { 100 } else { 10_000 };

/// Pushes `N` elements one by one, checking growth and contents.
fn grow_vec<S: Sharing>(v: Valloc<'_, S>) {
    let mut xs = Vec::new_in(v);
    assert_eq!(xs.capacity(), 0, "an empty Vec does not allocate");
    let mut reallocations = 0;
    for i in 0..N {
        let before = xs.capacity();
        xs.push(i as u64);
        reallocations += usize::from(xs.capacity() != before);
    }
    assert!(reallocations > 3, "only {reallocations} reallocations");
    assert!(xs.iter().copied().eq(0..N as u64));
    xs.truncate(10);
    xs.shrink_to_fit();
    assert_eq!(&xs[..], &(0..10).collect::<std::vec::Vec<u64>>()[..]);
    let copy = xs.clone();
    assert_eq!(copy, xs);
    assert_eq!(*copy.allocator(), v);
}

/// Inserts, looks up and removes `N` keys, through several resizes.
fn fill_map<S: Sharing>(v: Valloc<'_, S>) {
    let mut map = HashMap::new_in(v);
    for i in 0..N {
        assert_eq!(map.insert(i, i * 3), None);
    }
    assert_eq!(map.len(), N);
    assert!((0..N).all(|i| map[&i] == i * 3));
    for i in (0..N).step_by(2) {
        assert_eq!(map.remove(&i), Some(i * 3));
    }
    assert_eq!(map.len(), N / 2);
    map.shrink_to_fit();
    assert!((1..N).step_by(2).all(|i| map.get(&i) == Some(&(i * 3))));
}

/// Zero-sized layouts through the `Allocator` interface: unique, aligned,
/// freeable blocks; and collections of zero-sized values.
fn zero_sized<S: Sharing>(v: Valloc<'_, S>) {
    let mut blocks = std::vec::Vec::new();
    for align in [1, 2, 8, 16, 64, 4096] {
        let layout = Layout::from_size_align(0, align).unwrap();
        let block = v.allocate(layout).unwrap();
        assert_eq!(block.len(), 0);
        let p = block.cast::<u8>();
        assert_eq!(p.as_ptr() as usize % align, 0);
        assert!(
            blocks.iter().all(|&(q, _)| q != p),
            "zero-size blocks are unique"
        );
        blocks.push((p, layout));
    }
    for (p, layout) in blocks {
        // SAFETY: allocated just above with this layout.
        unsafe { v.deallocate(p, layout) };
    }
    let mut units = Vec::new_in(v);
    units.extend((0..N).map(|_| ()));
    assert_eq!(units.len(), N);
}

/// The provided methods (`allocate_zeroed`, `grow`, `shrink`) on top of
/// `allocate`/`deallocate`.
fn resize<S: Sharing>(v: Valloc<'_, S>) {
    let small = Layout::from_size_align(24, 8).unwrap();
    let big = Layout::from_size_align(4000, 64).unwrap();
    let block = v.allocate_zeroed(small).unwrap().cast::<u8>();
    // SAFETY: `block` is valid for `small.size()` bytes.
    unsafe {
        assert!(core::slice::from_raw_parts(block.as_ptr(), 24)
            .iter()
            .all(|&b| b == 0));
        block
            .as_ptr()
            .copy_from(b"twenty-four bytes long!!".as_ptr(), 24);
        let grown = v.grow(block, small, big).unwrap().cast::<u8>();
        assert_eq!(grown.as_ptr() as usize % 64, 0);
        assert_eq!(
            core::slice::from_raw_parts(grown.as_ptr(), 24),
            b"twenty-four bytes long!!"
        );
        grown.as_ptr().add(3999).write(7);
        let shrunk = v.shrink(grown, big, small).unwrap().cast::<u8>();
        assert_eq!(
            core::slice::from_raw_parts(shrunk.as_ptr(), 24),
            b"twenty-four bytes long!!"
        );
        v.deallocate(shrunk, small);
    }
}

fn all<S: Sharing>(v: Valloc<'_, S>) {
    let boxed = Box::new_in([7u8; 100], v);
    assert!(boxed.iter().all(|&b| b == 7));
    drop(boxed);
    grow_vec(v);
    fill_map(v);
    zero_sized(v);
    resize(v);
}

#[test]
fn libc_handle_backs_collections() {
    all(Valloc::libc());
    all(Valloc::libc().into_local());
}

#[test]
fn custom_handle_backs_collections_and_gets_everything_back() {
    let rec = Recorder::new();
    all(Valloc::new(&rec));
    let log = rec.log();
    assert!(log.requests.len() > 20, "{} requests", log.requests.len());
    assert!(
        log.requests.iter().all(|l| l.size() > 0),
        "zero sizes reach the allocator as 1"
    );
    assert!(log.live.is_empty(), "leaked: {:?}", log.live);
    assert!(log.errors.is_empty(), "{:?}", log.errors);
    assert_eq!(log.frees, log.requests.len());
}

#[test]
fn local_handle_backs_collections() {
    let rec = Unsync::new(Recorder::new());
    all(Valloc::new_local(&rec));
    let log = rec.0.log();
    assert!(!log.requests.is_empty());
    assert!(log.live.is_empty(), "leaked: {:?}", log.live);
}

#[test]
fn collections_of_zero_sized_values_do_not_allocate() {
    let rec = Recorder::new();
    let mut units = Vec::new_in(Valloc::new(&rec));
    units.extend((0..1000).map(|_| ()));
    let mut empty: Vec<u64, _> = Vec::with_capacity_in(0, Valloc::new(&rec));
    empty.shrink_to_fit();
    let unit = Box::new_in((), Valloc::new(&rec));
    drop((units, empty, unit));
    assert!(rec.log().requests.is_empty());
}

#[test]
fn null_handle_fails_cleanly() {
    let v = Valloc::null();
    let mut xs: Vec<u8, _> = Vec::new_in(v);
    assert!(xs.try_reserve(1).is_err());
    assert!(xs.is_empty());
    let mut map: HashMap<u32, u32, _, _> = HashMap::new_in(v);
    assert!(map.try_reserve(1).is_err());
    assert!(v.allocate(Layout::new::<u64>()).is_err());
    assert!(v.allocate(Layout::new::<()>()).is_err());
    assert!(Box::try_new_in(5u8, v).is_err());
}
