//! Buffers a network keeps between forward passes, so that after the first
//! call a pass allocates only its output.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use rayon::prelude::*;

use crate::cpu::Kernels;
use crate::layers::Epilogue;

/// The reusable memory of one network. Concurrent passes do not wait for
/// each other: a pass that finds the workspace busy uses a fresh one.
#[derive(Default)]
pub struct Workspace {
    buffers: Mutex<Buffers>,
    /// Which [`Kernels`] passes use, as an index into `Kernels::ALL`: set
    /// for tests through the hidden `__cnn_set_kernels` of a network.
    kernels: AtomicUsize,
}

/// What a forward pass works in.
#[derive(Default)]
pub(crate) struct Buffers {
    /// One epilogue per layer, its vectors refilled each pass and read by
    /// every thread.
    pub epilogues: Vec<Epilogue>,
    /// One per thread of the pass.
    pub threads: Vec<ThreadBuffers>,
    /// The batch's values where its steps on flat values start.
    pub flat: Vec<f32>,
}

/// What one thread of a forward pass works in.
#[derive(Default)]
pub(crate) struct ThreadBuffers {
    /// Two activation buffers used in turn: one read, one written.
    pub activations: [Vec<f32>; 2],
    /// Per thread of a layer: an im2col or direct-conv panel, or pool rows;
    /// past them, a conv's input padded once for all those threads.
    pub scratch: Vec<Vec<f32>>,
    /// What the branches of a block work in, while these buffers hold the
    /// block's input and output.
    pub inner: Option<Box<ThreadBuffers>>,
    /// A branch's output before it is added or joined.
    pub merge: Vec<f32>,
}

impl Workspace {
    pub(crate) fn kernels(&self) -> Kernels {
        Kernels::ALL[self.kernels.load(Ordering::Relaxed) % Kernels::ALL.len()]
    }

    /// Which kernels the network's later passes use.
    pub fn set_kernels(&self, kernels: Kernels) {
        let index = Kernels::ALL.iter().position(|&k| k == kernels).unwrap_or(0);
        self.kernels.store(index, Ordering::Relaxed);
    }

    /// Runs `f` with this workspace's buffers, or fresh ones if they are in use.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Buffers) -> T) -> T {
        match self.buffers.try_lock() {
            Ok(mut buffers) => f(&mut buffers),
            // Poisoned by a panic in another pass: its buffers may be half
            // written, which does not matter, but start clean all the same.
            Err(TryLockError::Poisoned(_)) | Err(TryLockError::WouldBlock) => f(&mut Buffers::default()),
        }
    }
}

impl Clone for Workspace {
    /// A clone starts with empty buffers of its own.
    fn clone(&self) -> Workspace {
        Workspace::default()
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workspace")
    }
}

/// A value of a layer's output as the layer is given it: `f32`, written
/// before (a buffer reused, a block's output), or `MaybeUninit<f32>`, not
/// yet (the outputs a pass returns, allocated without zeros).
pub(crate) trait Slot: Send + Sized {
    /// Whether the values may be unwritten.
    const FRESH: bool;

    /// The values, zeros where they were not written yet.
    fn values(slots: &mut [Self]) -> &mut [f32];
}

impl Slot for f32 {
    const FRESH: bool = false;

    fn values(slots: &mut [f32]) -> &mut [f32] {
        slots
    }
}

impl Slot for MaybeUninit<f32> {
    const FRESH: bool = true;

    fn values(slots: &mut [MaybeUninit<f32>]) -> &mut [f32] {
        zeroed(slots)
    }
}

/// `values`, each set to zero.
#[allow(unsafe_code)]
pub(crate) fn zeroed(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    values.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was written just above, and `MaybeUninit<f32>`
    // has the layout of `f32`.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Splits `out` into units of `unit_len` values and calls
/// `work(unit, values, scratch)` on each, a unit at a time, on rayon's
/// threads: each takes the next unit when it is done with one, so that a
/// core the machine gives less time to takes fewer. `scratch` is the
/// running thread's own buffer from `scratch` (kept for next time). How a
/// unit is computed must not depend on the thread, so that results do not
/// depend on the thread count. Inside [`alone`], on the calling thread.
///
/// Fresh values are zeroed a unit at a time, just before `work` writes
/// them, while they are in cache: zeroing a large output in memory
/// beforehand costs about as much again as writing it.
pub(crate) fn split_among_threads<T: Slot>(
    out: &mut [T],
    unit_len: usize,
    scratch: &mut Vec<Vec<f32>>,
    work: impl Fn(usize, &mut [f32], &mut Vec<f32>) + Sync,
) {
    let unit_len = unit_len.max(1);
    let threads = rayon::current_num_threads();
    if scratch.len() < threads {
        scratch.resize_with(threads, Vec::new);
    }
    if threads == 1 || out.len() <= unit_len || ALONE.get() {
        let scratch = &mut scratch[0];
        return out
            .chunks_mut(unit_len)
            .enumerate()
            .for_each(|(unit, values)| work(unit, T::values(values), scratch));
    }
    let units = out.par_chunks_mut(unit_len).enumerate();
    for_each_with_slot(units, &mut scratch[..threads], |(unit, values), scratch| {
        work(unit, T::values(values), scratch)
    });
}

/// Calls `work(item, slot)` for each of `items` on rayon's threads, `slot`
/// being the running thread's own of `slots`, one per thread of the pool.
pub(crate) fn for_each_with_slot<I: ParallelIterator, T: Send + Default>(
    items: I,
    slots: &mut [T],
    work: impl Fn(I::Item, &mut T) + Sync,
) {
    let threads = slots.len().max(1);
    let slots: Vec<Mutex<&mut T>> = slots.iter_mut().map(Mutex::new).collect();
    items.for_each(|item| {
        // An item's work is done alone (it calls no rayon), so its thread's
        // slot is free; were it not, a slot of its own does the same work.
        match slots[rayon::current_thread_index().unwrap_or(0) % threads].try_lock() {
            Ok(mut slot) => work(item, &mut slot),
            Err(_) => work(item, &mut T::default()),
        }
    });
}

thread_local! {
    /// Whether this thread runs a piece of work that rayon's threads share
    /// already: its layers then split nothing further.
    static ALONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the layers it calls on this thread only: for one of the
/// pieces of a batch that the threads take in turn, so that no thread
/// waiting inside a layer takes up another piece.
pub(crate) fn alone<R>(f: impl FnOnce() -> R) -> R {
    // Set back on the way out, by a panic too: rayon's threads outlive it.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.set(self.0);
        }
    }
    let _restore = Restore(ALONE.replace(true));
    f()
}
