//! Buffers a network keeps between forward passes, so that after the first
//! call a pass allocates only its output.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use rayon::prelude::*;

use crate::cpu::Kernels;
use crate::infer::Prepared;

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
    /// What the layers read in every chunk, remade each pass and read by
    /// every thread.
    pub prepared: Prepared,
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

    /// The values as slots that a kernel writes every one of before it
    /// reads any: not zeroed first, which for a large output costs about
    /// as much as writing it.
    fn slots(slots: &mut [Self]) -> Slots<'_>;
}

impl Slot for f32 {
    const FRESH: bool = false;

    fn values(slots: &mut [f32]) -> &mut [f32] {
        slots
    }

    fn slots(slots: &mut [f32]) -> Slots<'_> {
        Slots(as_slots(slots))
    }
}

impl Slot for MaybeUninit<f32> {
    const FRESH: bool = true;

    fn values(slots: &mut [MaybeUninit<f32>]) -> &mut [f32] {
        zeroed(slots)
    }

    fn slots(slots: &mut [MaybeUninit<f32>]) -> Slots<'_> {
        Slots(slots)
    }
}

/// Values that may not have been written yet, and through which only
/// floats are written: floats can be seen this way too, as nothing
/// uninitialized is ever written into them.
pub(crate) struct Slots<'a>(&'a mut [MaybeUninit<f32>]);

#[allow(unsafe_code)]
impl<'a> Slots<'a> {
    /// The slots from `first` on.
    pub fn from(self, first: usize) -> Slots<'a> {
        Slots(&mut self.0[first..])
    }

    /// The `len` slots from `first` on, for a while.
    #[inline(always)]
    pub fn part(&mut self, first: usize, len: usize) -> Slots<'_> {
        Slots(&mut self.0[first..][..len])
    }

    /// The same slots, for a while.
    pub fn reborrow(&mut self) -> Slots<'_> {
        Slots(self.0)
    }

    /// Asks for the cache lines of `rows` of a matrix in these slots (rows
    /// `stride` apart, `cols` from `first` in each) to be fetched.
    #[inline(always)]
    pub fn prefetch_rows(&self, rows: std::ops::Range<usize>, stride: usize, first: usize, cols: usize) {
        for row in rows {
            for col in (0..cols).step_by(16) {
                crate::cpu::prefetch(self.0, row * stride + first + col);
            }
        }
    }

    /// A vector of floats into the slots from `first`, as much of it as
    /// fits: one store where it all does, rather than a copy of its
    /// floats through the stack.
    #[inline(always)]
    pub fn store<V: pulp::bytemuck::Pod>(&mut self, first: usize, vector: V) {
        let slots = &mut self.0[first..];
        match slots.get_mut(..size_of::<V>() / size_of::<f32>()) {
            // SAFETY: `whole` has room for the vector, which is plain
            // floats, written unaligned.
            Some(whole) => unsafe { whole.as_mut_ptr().cast::<V>().write_unaligned(vector) },
            None => {
                let values: &[f32] = pulp::bytemuck::cast_slice(std::slice::from_ref(&vector));
                slots.iter_mut().zip(values).for_each(|(slot, &value)| _ = slot.write(value));
            }
        }
    }

    /// The `len` values from slot `first` on.
    ///
    /// # Safety
    ///
    /// Each was written through these slots, or the slots are floats.
    #[inline(always)]
    pub unsafe fn written(&self, first: usize, len: usize) -> &[f32] {
        let slots = &self.0[first..][..len];
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the
        // caller says every value is initialized.
        unsafe { &*(slots as *const [MaybeUninit<f32>] as *const [f32]) }
    }

    /// All the values.
    ///
    /// # Safety
    ///
    /// Every one was written through these slots, or the slots are floats.
    pub unsafe fn into_written(self) -> &'a mut [f32] {
        // SAFETY: as for `written`.
        unsafe { &mut *(self.0 as *mut [MaybeUninit<f32>] as *mut [f32]) }
    }
}

/// `values`, each set to zero.
pub(crate) fn zeroed(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    values.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was written just above.
    #[allow(unsafe_code)]
    unsafe {
        Slots(values).into_written()
    }
}

/// Floats as slots: nothing but floats is written through [`Slots`], so
/// the values stay initialized.
#[allow(unsafe_code)]
fn as_slots(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and `Slots`
    // writes only floats.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Splits `out` into units of `unit_len` values and calls
/// `work(unit, values, scratch)` on each, a unit at a time, on rayon's
/// threads: each takes the next unit when it is done with one, so that a
/// core the machine gives less time to takes fewer. `scratch` is the
/// running thread's own buffer from `scratch` (kept for next time). How a
/// unit is computed must not depend on the thread, so that results do not
/// depend on the thread count. Inside [`alone`], on the calling thread.
///
/// `work` takes fresh values as they are: to write each as [`Slots`],
/// or zeroed (by [`Slot::values`]) a unit at a time, while they are in
/// cache: zeroing a large output in memory beforehand costs about as much
/// again as writing it.
pub(crate) fn split_among_threads<T: Slot>(
    out: &mut [T],
    unit_len: usize,
    scratch: &mut Vec<Vec<f32>>,
    work: impl Fn(usize, &mut [T], &mut Vec<f32>) + Sync,
) {
    let unit_len = unit_len.max(1);
    let threads = rayon::current_num_threads();
    if scratch.len() < threads {
        scratch.resize_with(threads, Vec::new);
    }
    if sharing_threads() == 1 || out.len() <= unit_len {
        let scratch = &mut scratch[0];
        return out.chunks_mut(unit_len).enumerate().for_each(|(unit, values)| work(unit, values, scratch));
    }
    let units = out.par_chunks_mut(unit_len).enumerate();
    for_each_with_slot(units, &mut scratch[..threads], |(unit, values), scratch| work(unit, values, scratch));
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

/// How many values a part of a batch's activations holds in training, for
/// an activation or a batchnorm on one thread: whole rows of `channels`
/// (softmax needs them), enough that a part is worth handing to another
/// thread. Parts are cut by length alone, so that sums over them, added in
/// order, are the same whatever the thread count.
pub(crate) fn training_part(channels: usize) -> usize {
    (1usize << 15).next_multiple_of(channels.max(1))
}

/// Whether `len` values go to rayon's threads in parts of `part`: more
/// than one part, and threads to share them (not inside a piece of a batch
/// that a thread runs alone). Handing work over costs a wake-up.
pub(crate) fn in_shared_parts(len: usize, part: usize) -> bool {
    len > part && sharing_threads() > 1
}

/// Runs `f` on the [`training_part`]s of `values` (rows of `channels`),
/// each with where it starts and ends in them, on rayon's threads where
/// they are [`in_shared_parts`].
pub(crate) fn in_parts(values: &mut [f32], channels: usize, f: impl Fn(&mut [f32], Range<usize>) + Sync) {
    let part = training_part(channels);
    match in_shared_parts(values.len(), part) {
        true => values.par_chunks_mut(part).enumerate().for_each(|(i, values)| {
            let start = i * part;
            f(values, start..start + values.len())
        }),
        false => f(values, 0..values.len()),
    }
}

/// The threads that share the work of a layer run here: all of rayon's,
/// or one where this thread runs a piece of work the threads share already.
pub(crate) fn sharing_threads() -> usize {
    if ALONE.get() { 1 } else { rayon::current_num_threads() }
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

thread_local! {
    /// The scratch buffers of the layers of a training step, kept on each
    /// thread from step to step.
    static KEPT_SCRATCH: std::cell::Cell<Vec<Vec<f32>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's kept scratch buffers: those of the last
/// call on this thread, or none the first time (or inside another call).
/// A training step has no workspace of its own; buffers of megabytes
/// allocated afresh each step cost a page fault for every 4 KiB of them
/// when the allocator has handed their memory back.
pub(crate) fn with_kept_scratch<R>(f: impl FnOnce(&mut Vec<Vec<f32>>) -> R) -> R {
    let mut scratch = KEPT_SCRATCH.take();
    let result = f(&mut scratch);
    KEPT_SCRATCH.set(scratch);
    result
}

thread_local! {
    /// Buffers of a training step given back at its end, for the next.
    static SPARE: std::cell::Cell<Vec<Vec<f32>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most buffers a thread keeps for the next step.
const SPARES: usize = 64;

/// The smallest buffer this thread gave back with [`give_back`] that holds
/// `len` values (its old values in it), or a new one: the next step's
/// buffers are the last one's, rather than memory the allocator maps
/// afresh, a page fault every 4 KiB.
fn reused(len: usize) -> Vec<f32> {
    // Nothing to hold: no spare taken out of the pool for it.
    if len == 0 {
        return Vec::new();
    }
    let mut spares = SPARE.take();
    let fits =
        spares.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity());
    let buffer = fits.map(|(i, _)| i).map_or_else(|| Vec::with_capacity(len), |i| spares.swap_remove(i));
    SPARE.set(spares);
    buffer
}

/// `len` values for the caller to overwrite, in a buffer of the last
/// step's (see [`reused`]) holding what it held: zeroing them first, a
/// pass over memory of its own, would be lost. NaN in builds with debug
/// assertions (the tests'), where a value left unwritten shows.
pub(crate) fn overwritten(len: usize) -> Vec<f32> {
    let mut buffer = reused(len);
    if cfg!(debug_assertions) {
        buffer.clear();
    }
    buffer.truncate(len);
    buffer.resize(len, if cfg!(debug_assertions) { f32::NAN } else { 0.0 });
    buffer
}

/// Keeps `buffers` on this thread for [`overwritten`], the
/// largest up to `SPARES`.
pub(crate) fn give_back(buffers: impl IntoIterator<Item = Vec<f32>>) {
    let mut spares = SPARE.take();
    spares.extend(buffers.into_iter().filter(|b| b.capacity() > 0));
    if spares.len() > SPARES {
        spares.sort_unstable_by_key(|b| std::cmp::Reverse(b.capacity()));
        spares.truncate(SPARES);
    }
    SPARE.set(spares);
}
