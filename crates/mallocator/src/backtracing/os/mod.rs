//! The platform layer: everything the tracker needs from the operating
//! system, behind one small internal API, one concern per file. Under
//! Miri (which cannot read real stack frames, resolve symbols or write to
//! file descriptors of its host) each function has a stand-in, so the
//! logic above it stays testable there.
//!
//! * `stack.rs`: [`stack_bounds`], the current thread's stack
//!   `[low, high)`; [`alt_stack_bounds`], the signal alternate stack when
//!   running on it;
//! * `registers.rs`: [`frame_pointer`], [`stack_pointer_estimate`] and
//!   the DWARF unwinder's starting registers; the callee-saved registers
//!   a leak scan takes as roots;
//! * `backtrace.rs`: [`unwind`], the `backtrace` crate's unwinder (or the
//!   stand-in); [`symbolize`], function, file and line of an instruction
//!   pointer; [`stack_of_exit_caller`];
//! * `loader.rs`: [`with_code_site`], the object and symbol an address is
//!   in (`dladdr`); [`for_each_module`], the loaded objects with their
//!   build-ids and unwind sections; [`with_loader_locked`];
//! * `roots.rs`: [`for_each_root_range`], memory that holds a program's
//!   pointers (writable data of every object, this thread's thread-local
//!   storage), and [`for_each_word`] to read it;
//! * `readable.rs`: [`Readable`], the parts of the address space a leak
//!   scan may read;
//! * `descriptors.rs`: the descriptors of log files, moved out of the
//!   program's way and listed ([`holds_descriptor`], [`log_descriptors`]);
//! * `sink.rs`: [`Sink`] / [`write_all`], whole-record writes to a file
//!   or stream, [`create_private_file`], and [`position`] / [`cut_back`]
//!   to take back the end of a file;
//! * `cancel.rs`: `NoCancel`, which keeps `pthread_cancel` from acting
//!   inside the tracker's own calls: every call of the tracker's that
//!   opens, reads, writes or closes a file holds one;
//! * `process.rs`: [`at_exit`], [`at_fork`], [`with_signals_blocked`]
//!   (and [`block_signals`] / [`restore_signals`]);
//!   [`process()`], pid, start time, executable and working directory;
//!   [`exit_now`];
//! * `clock.rs`: [`ticks`] / [`CLOCK`], a monotonic clock for event
//!   timestamps.

mod backtrace;
mod cancel;
mod clock;
#[cfg(unix)]
mod descriptors;
mod loader;
mod process;
mod readable;
mod registers;
mod roots;
mod sink;
mod stack;

#[cfg(all(miri, test))]
pub(crate) use backtrace::set_stand_in_site;
#[cfg(all(test, unix))]
pub(crate) use backtrace::UNWINDS;
pub(crate) use backtrace::{stack_of_exit_caller, symbolize, unwind, SYMBOLIZING};
pub use cancel::NoCancel;
pub(crate) use clock::{ticks, ticks_per_second, CLOCK};
#[cfg(unix)]
pub use descriptors::{holds_descriptor, log_descriptors, HeldLogFile, LogDescriptors};
#[cfg(dwarf_unwinder)]
pub(crate) use loader::UnwindSections;
pub(crate) use loader::{for_each_module, with_code_site, with_loader_locked};
pub(crate) use process::{
    at_exit, at_fork, block_signals, executable, exit_now, process, restore_signals,
    with_signals_blocked, working_directory, SignalMask, PATH_MAX,
};
pub(crate) use readable::Readable;
#[cfg(dwarf_unwinder)]
pub(crate) use registers::registers;
pub(crate) use registers::{
    callee_saved_registers, frame_pointer, stack_pointer_estimate, Registers,
};
pub(crate) use roots::{for_each_root_range, for_each_word, ROOTS_KNOWN};
pub(crate) use sink::{create_private_file, cut_back, position, write_all, write_all_two, Sink};
pub(crate) use stack::{alt_stack_bounds, stack_bounds};
