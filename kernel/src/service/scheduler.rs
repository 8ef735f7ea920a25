//! Admission and scheduling (DESIGN §14): `slots` generations run at once, each in its own
//! slot whose context (KV cache and buffers) is allocated once when the model loads; further
//! requests wait in a bounded queue; when every slot is busy and the queue is full the request
//! is refused as busy. Each [`Scheduler::step`] is one step of the fixed-slot batcher: one
//! batched forward pass over every busy slot on the executor's CPUs, so every answer streams.
//! A slot's KV cache is zeroed when its generation ends.

use super::engine::{Generation, LoadedModel, PROMPT_BATCH, StepOutput};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ward_attestation::protocol::Request;
use ward_inference::batcher::{Batcher, BatcherConfig, SlotId};
use ward_inference::parallel::Executor;
use ward_inference::sampler::SamplerConfig;
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

struct Waiting<K> {
    owner: K,
    prompt: Zeroizing<Vec<u32>>,
    max_new: u32,
}

/// What one step made for one request: whose it was, and its output or why it failed.
pub type SlotOutput<K> = (K, Result<StepOutput, String>);

/// Slots plus the bounded queue, for requests owned by sessions identified by `K`.
pub struct Scheduler<K> {
    model: &'static LoadedModel,
    executor: &'static dyn Executor,
    batcher: Batcher,
    /// The request in each batcher slot, by slot number.
    jobs: Vec<Option<(K, Generation)>>,
    queue: VecDeque<Waiting<K>>,
    queue_capacity: usize,
    capacity: usize,
    /// Queued requests that could not start when a cancelled one freed their slot, reported
    /// with the next step.
    failed: Vec<SlotOutput<K>>,
}

/// The batcher behind `slots` slots of `capacity` positions.
pub fn batcher_config(slots: usize, capacity: usize) -> BatcherConfig {
    // Prompts are read in chunks of `PROMPT_BATCH`, as `ward generate` does, so each slot's
    // arithmetic and hence its greedy answer are the same as on the host.
    BatcherConfig {
        slots: slots.max(1),
        capacity,
        prefill_chunk: PROMPT_BATCH,
    }
}

impl<K: Copy + Eq> Scheduler<K> {
    /// `slots` contexts of `capacity` positions each, allocated now; steps run on `executor`.
    pub fn new(
        model: &'static LoadedModel,
        executor: &'static dyn Executor,
        slots: usize,
        queue: usize,
        capacity: usize,
    ) -> Self {
        let batcher = model.new_batcher(batcher_config(slots, capacity));
        Self {
            model,
            executor,
            jobs: (0..batcher.config().slots).map(|_| None).collect(),
            batcher,
            queue: VecDeque::with_capacity(queue),
            queue_capacity: queue,
            capacity,
            failed: Vec::new(),
        }
    }

    /// Requests running or queued.
    pub fn load(&self) -> (usize, usize) {
        let running = self.jobs.iter().filter(|j| j.is_some()).count();
        (running, self.queue.len())
    }

    /// Takes a request: into a free slot, else into the queue, else refused as busy.
    pub fn admit(&mut self, owner: K, request: &Request) -> Result<Admitted, Refusal> {
        let free = self.jobs.iter().any(|j| j.is_none());
        if !free && self.queue.len() >= self.queue_capacity {
            return Err(Refusal::Busy {
                slots: self.jobs.len(),
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
        if free {
            self.start(waiting).map_err(Refusal::BadRequest)?;
            Ok(Admitted::Running)
        } else {
            self.queue.push_back(waiting);
            Ok(Admitted::Queued)
        }
    }

    fn start(&mut self, waiting: Waiting<K>) -> Result<(), String> {
        let generation = Generation::new(
            self.model,
            waiting.prompt.len(),
            waiting.max_new,
            self.capacity,
        );
        // The batcher needs at least one token to make; a request for none ends at the first.
        let slot = self
            .batcher
            .start(
                &waiting.prompt,
                generation.max_new().max(1),
                SamplerConfig::greedy(),
            )
            .map_err(|e| e.to_string())?;
        self.jobs[slot.0] = Some((waiting.owner, generation));
        Ok(())
    }

    /// Frees a slot (the batcher zeroes its KV cache and history) and starts the queue's head
    /// in it; a queued request that cannot start is reported in `out`.
    fn release(&mut self, index: usize, out: &mut Vec<SlotOutput<K>>) {
        if self.jobs[index].take().is_some() {
            // The slot was busy, so the batcher cannot refuse.
            let _ = self.batcher.release(SlotId(index));
        }
        if let Some(waiting) = self.queue.pop_front() {
            let owner = waiting.owner;
            if let Err(why) = self.start(waiting) {
                out.push((owner, Err(why)));
            }
        }
    }

    /// Drops `owner`'s request, queued or running (its session ended).
    pub fn cancel(&mut self, owner: K) {
        self.queue.retain(|w| w.owner != owner);
        if let Some(index) = self
            .jobs
            .iter()
            .position(|j| j.as_ref().is_some_and(|(o, _)| *o == owner))
        {
            let mut failed = core::mem::take(&mut self.failed);
            self.release(index, &mut failed);
            self.failed = failed;
        }
    }

    /// One batched step over every busy slot: whose requests got output and what. A finished
    /// or failed generation frees its slot (KV cache zeroed) for the queue's head.
    pub fn step(&mut self) -> Vec<SlotOutput<K>> {
        let mut out = core::mem::take(&mut self.failed);
        if self.jobs.iter().all(|j| j.is_none()) {
            return out;
        }
        let emitted = match self.batcher.step(self.model.model(), self.executor) {
            Ok(emitted) => emitted.to_vec(),
            Err(error) => {
                // A failed batched pass leaves every busy slot's context undefined: end them all.
                let why = error.to_string();
                for index in 0..self.jobs.len() {
                    if let Some((owner, _)) = &self.jobs[index] {
                        out.push((*owner, Err(why.clone())));
                        self.release(index, &mut out);
                    }
                }
                return out;
            }
        };
        for token in emitted {
            let index = token.slot.0;
            let Some((owner, generation)) = self.jobs[index].as_mut() else {
                continue;
            };
            let owner = *owner;
            let output = generation.accept(self.model, token.token);
            let finished = output.done || token.last;
            out.push((owner, Ok(output)));
            if finished {
                self.release(index, &mut out);
            }
        }
        out
    }
}
