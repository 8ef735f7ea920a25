//! Admission and scheduling (DESIGN §14): `slots` generations run at once, each in its own
//! slot whose context (KV cache and buffers) is allocated once when the model loads; further
//! requests wait in a bounded queue; when every slot is busy and the queue is full the request
//! is refused as busy. Busy slots take turns, one engine step each, so every answer streams.
//!
//! The fixed-slot batcher (one batched forward pass over all busy slots per step) replaces
//! [`Scheduler::step`]'s one-slot-per-step turn taking; admission, cancellation and slot
//! reuse stay as they are. A slot's KV cache is zeroed when its generation ends.

use super::engine::{Generation, LoadedModel, StepOutput};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use ward_attestation::protocol::Request;
use ward_inference::model::Context;
use zeroize::Zeroizing;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is busy and the queue is full.
    Busy { slots: usize, queue: usize },
    /// The request cannot be served (empty, or longer than a slot's context).
    BadRequest(String),
}

/// Where an admitted request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A slot took it.
    Running,
    /// It waits in the queue.
    Queued,
}

struct Slot<K> {
    context: Context,
    job: Option<(K, Generation)>,
}

struct Waiting<K> {
    owner: K,
    prompt: Zeroizing<Vec<u32>>,
    max_new: u32,
}

/// Slots plus the bounded queue, for requests owned by sessions identified by `K`.
pub struct Scheduler<K> {
    model: &'static LoadedModel,
    slots: Vec<Slot<K>>,
    queue: VecDeque<Waiting<K>>,
    queue_capacity: usize,
    capacity: usize,
    logits: Vec<f32>,
    next: usize,
}

impl<K: Copy + Eq> Scheduler<K> {
    /// `slots` contexts of `capacity` positions each, allocated now.
    pub fn new(
        model: &'static LoadedModel,
        slots: usize,
        queue: usize,
        capacity: usize,
        vocab: usize,
    ) -> Self {
        Self {
            model,
            slots: (0..slots.max(1))
                .map(|_| Slot {
                    context: model.new_context(capacity),
                    job: None,
                })
                .collect(),
            queue: VecDeque::with_capacity(queue),
            queue_capacity: queue,
            capacity,
            logits: vec![0.0; vocab],
            next: 0,
        }
    }

    /// Requests running or queued.
    pub fn load(&self) -> (usize, usize) {
        let running = self.slots.iter().filter(|s| s.job.is_some()).count();
        (running, self.queue.len())
    }

    /// Takes a request: into a free slot, else into the queue, else refused as busy.
    pub fn admit(&mut self, owner: K, request: &Request) -> Result<Admitted, Refusal> {
        let free = self.slots.iter().position(|s| s.job.is_none());
        if free.is_none() && self.queue.len() >= self.queue_capacity {
            return Err(Refusal::Busy {
                slots: self.slots.len(),
                queue: self.queue_capacity,
            });
        }
        let prompt = self
            .model
            .prompt_tokens(request)
            .map_err(Refusal::BadRequest)?;
        if prompt.is_empty() {
            return Err(Refusal::BadRequest("the prompt is empty".into()));
        }
        if prompt.len() >= self.capacity {
            return Err(Refusal::BadRequest(format!(
                "the prompt's {} tokens do not fit a slot's context of {}",
                prompt.len(),
                self.capacity
            )));
        }
        let waiting = Waiting {
            owner,
            prompt,
            max_new: request.max_new_tokens,
        };
        match free {
            Some(index) => {
                self.start(index, waiting);
                Ok(Admitted::Running)
            }
            None => {
                self.queue.push_back(waiting);
                Ok(Admitted::Queued)
            }
        }
    }

    fn start(&mut self, index: usize, waiting: Waiting<K>) {
        let generation =
            Generation::new(self.model, waiting.prompt, waiting.max_new, self.capacity);
        self.slots[index].job = Some((waiting.owner, generation));
    }

    fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.job = None;
        slot.context.reset();
        self.logits.fill(0.0);
        if let Some(waiting) = self.queue.pop_front() {
            self.start(index, waiting);
        }
    }

    /// Drops `owner`'s request, queued or running (its session ended).
    pub fn cancel(&mut self, owner: K) {
        self.queue.retain(|w| w.owner != owner);
        if let Some(index) = self
            .slots
            .iter()
            .position(|s| s.job.as_ref().is_some_and(|(o, _)| *o == owner))
        {
            self.release(index);
        }
    }

    /// One engine step for the next busy slot in turn: whose request it was and what it made.
    /// A finished or failed generation frees its slot (KV cache zeroed) for the queue's head.
    pub fn step(&mut self) -> Option<(K, Result<StepOutput, String>)> {
        let count = self.slots.len();
        let index = (0..count)
            .map(|i| (self.next + i) % count)
            .find(|&i| self.slots[i].job.is_some())?;
        self.next = (index + 1) % count;
        let slot = &mut self.slots[index];
        let (owner, generation) = slot.job.as_mut()?;
        let owner = *owner;
        let result = generation.step(self.model, &mut slot.context, &mut self.logits);
        let finished = result.as_ref().map_or(true, |out| out.done);
        if finished {
            self.release(index);
        }
        Some((owner, result))
    }
}
