//! A string-handling program that leaks, deterministically: interned
//! labels (`Box::leak`), a forgotten greeting and a forgotten word list,
//! while the rest of its strings are freed.
//!
//! ```text
//! MALLOCATOR_LEAKS=stderr cargo run -p mallocator --example leaky_strings
//! ```

#[path = "alloc_switch/mod.rs"]
mod alloc_switch;

#[global_allocator]
static GLOBAL: alloc_switch::Switch = alloc_switch::Switch::new();

#[inline(never)]
fn make_label(i: usize) -> String {
    format!("label-{i:04}")
}

/// Leaks each name as a `&'static str` (an "interner" that never frees).
#[inline(never)]
fn intern_all(names: &[String]) -> Vec<&'static str> {
    names
        .iter()
        .map(|n| &*Box::leak(n.clone().into_boxed_str()))
        .collect()
}

#[inline(never)]
fn greeting(name: &str) -> String {
    let mut s = String::from("hello, ");
    s.push_str(name);
    s.push('!');
    s
}

#[inline(never)]
fn split_words(text: &str) -> Vec<String> {
    text.split(' ').map(str::to_owned).collect()
}

fn main() {
    let labels: Vec<String> = (0..50).map(make_label).collect();
    let interned = intern_all(&labels[..20]);
    let g = greeting("world");
    let words = split_words("alpha beta gamma delta epsilon");
    eprintln!(
        "leaky_strings: {} labels, {} interned, {:?}, {} words",
        labels.len(),
        interned.len(),
        g,
        words.len()
    );
    std::mem::forget(g);
    std::mem::forget(words);
    drop(interned);
    drop(labels);
}
