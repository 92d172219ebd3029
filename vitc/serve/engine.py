"""Dynamic batching: one bounded queue of images, R replica threads, each with its own model object.

Images arrive preprocessed (float32 [C, H, W]) or encoded with a `prepare` function (encoded bytes ->
decoded image) that the replica runs on its batch, then preprocesses the decoded images in one call of its
model's image processor, then runs the forward: no thread hop per request, and a batched preprocessing
(for a small model these cost as much as its compute). The queue holds at most max_queue images (each
encoded one within the body limit). An image that fails to decode or preprocess gets that error alone
(prepare.refuse(index, error) may rename it); the rest of its batch runs. A replica takes the oldest image, then waits up to
max_queue_delay (counted from that image's arrival) for more images of the same task until it holds
max_batch_size, and runs them as one forward; it stops waiting early when every request that could still come
is queued (open_connections: each open connection has a request in the engine, so nothing more can arrive
until an answer goes out). A request is one Job: each image's result lands in its slot, so a request gets
exactly its own rows back whatever batch they ran in, and a replica settles the jobs a batch completes with one
call of their waker per batch (not a Future and a loop wake-up per image). Images whose job was cancelled
(timeout) are skipped.
"""
import collections
import logging
import threading
import time

import numpy as np

from .loading import can_classify, can_zero_shot

log = logging.getLogger("vitc.serve")

EMBED, CLASSIFY, EMBED_TEXT = "embed", "classify", "embed_text"  # EMBED_TEXT items are strings


class QueueFull(Exception):
    """The queue has no room for the images of this request (HTTP 429)."""


class NotAccepting(Exception):
    """The server is draining or has no live replica (HTTP 503)."""


class Job:
    """The images of one request. results[i]: image i's embedding row / [(label, score)], or the exception
    that failed it (failed[i] True). Done when every image has its result: then the engine calls
    waker([jobs...]) from its replica thread, once per batch for all the jobs of that waker the batch
    completed, or, without a waker, sets an event wait() blocks on."""
    __slots__ = ("task", "top_k", "prepare", "results", "failed", "left", "enqueued", "cancelled", "counted",
                 "waker", "waiter", "_event")

    def __init__(self, task, count, top_k, prepare, waker, waiter, counted):
        self.task, self.top_k, self.prepare, self.waker, self.counted = task, top_k, prepare, waker, counted
        self.results, self.failed, self.left = [None] * count, [False] * count, count
        self.enqueued = time.perf_counter()
        self.cancelled = False
        self.waiter = waiter  # the waker's handle on the job (LoopSide: the asyncio future the request awaits)
        self._event = threading.Event() if waker is None else None

    def done(self):
        return self.left == 0

    def outcome(self):
        """The results in order; raises the first failed image's exception (request order)."""
        for result, failed in zip(self.results, self.failed):
            if failed:
                raise result
        return self.results

    def wait(self, timeout=None):
        """For a thread without an event loop (waker None): outcome() once done, TimeoutError before."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        return self.outcome()


class _Item:
    __slots__ = ("job", "index", "pixels")

    def __init__(self, job, index, pixels):
        self.job, self.index, self.pixels = job, index, pixels


class Engine:
    """R replicas x T threads behind one queue. load(threads) -> model object (see loading.load_model)."""

    def __init__(self, load, replicas, threads, max_batch_size, max_queue_delay_s, max_queue, metrics=None,
                 open_connections=None):
        self._load = load
        # () -> how many clients could send a request now (the server's open connections); None: no early batch
        self.open_connections = open_connections
        self._open_jobs = 0  # counted jobs submitted, neither done nor cancelled
        self.replicas, self.threads = replicas, threads
        self.max_batch_size, self.max_queue_delay_s, self.max_queue = max_batch_size, max_queue_delay_s, max_queue
        self.metrics = metrics
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._workers = []
        self._warm = [False] * replicas
        self._stopping = False
        self.draining = False
        self.failed = None  # the message of a replica that could not load or died
        self.info = None  # filled by the first replica to warm up: embedding_dim, labels, can_classify, zero_shot
        self.rank_labels = None  # a two-tower model's ranking of labels from embeddings (numpy only, shareable)
        self.processor = None  # the image processor of the first replica's model (options only, shareable)

    # ---- state ---------------------------------------------------------------------------------------
    def start(self):
        for index in range(self.replicas):
            worker = threading.Thread(target=self._run, args=(index,), name=f"vitc-replica-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def alive(self):
        return sum(w.is_alive() for w in self._workers)

    def loaded(self):
        return any(self._warm)

    def ready(self):
        """Every replica loaded, warmed and alive, and not draining."""
        return (not self._stopping and not self.draining and self.failed is None and all(self._warm)
                and self.alive() == self.replicas)

    def queued(self):
        return len(self._queue)

    def stop(self, timeout=None):
        """Finish the queued images, then end the replicas."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # ---- requests ------------------------------------------------------------------------------------
    def submit(self, task, inputs, top_k=None, prepare=None, waker=None, waiter=None, counted=True):
        """Queue the images of one request: preprocessed, or anything prepare(index, value) turns into pixels
        in the replica; a Job (see there). counted=False: a second job of the same request (not one more
        client that is waiting, for the early-batch rule)."""
        job = Job(task, len(inputs), top_k, prepare, waker, waiter, counted)
        items = [_Item(job, i, p) for i, p in enumerate(inputs)]
        with self._cond:
            # a replica ends only by stopping or failing: count the live ones (a lock per thread) only then
            if self._stopping or not self._workers or (self.failed is not None and self.alive() == 0):
                raise NotAccepting("the server is shutting down" if self._stopping else "no replica is running")
            if len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(f"the queue is full ({len(self._queue)} of {self.max_queue} images waiting)")
            was_empty = not self._queue
            self._queue.extend(items)
            self._open_jobs += counted
            # wake replicas only when it matters (each wake-up is a thread switch and a GIL hand-over): an
            # idle one for a new batch, or a filling one whose batch is now full or can fill no more; else it
            # wakes at its deadline
            if was_empty:
                self._cond.notify()
            elif len(self._queue) >= self.max_batch_size or self._all_queued():
                self._cond.notify_all()
        return job

    def cancel(self, job):
        """The request gave up (timeout): its images still queued are skipped, its results never delivered."""
        with self._cond:
            if not job.cancelled and job.left:
                job.cancelled = True
                self._open_jobs -= job.counted

    def _all_queued(self):
        """Every client that could send has a request in the engine: waiting longer only idles the replica
        (called with the lock held)."""
        return self.open_connections is not None and self._open_jobs >= self.open_connections()

    # ---- replicas ------------------------------------------------------------------------------------
    def _next_batch(self):
        """Up to max_batch_size live items of one task, or None once stopping with an empty queue."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].job.cancelled:
                    self._queue.popleft()
                if self._queue:
                    first = self._queue[0]
                    task, deadline = first.job.task, first.job.enqueued + self.max_queue_delay_s
                    while not self._stopping:
                        same = sum(1 for it in self._queue if it.job.task == task)
                        left = deadline - time.perf_counter()
                        if same >= self.max_batch_size or left <= 0 or self._all_queued():
                            break
                        self._cond.wait(left)
                    if self._queue and self._queue[0] is first:
                        return self._take(task)
                    continue  # another replica took it meanwhile
                if self._stopping:
                    return None
                self._cond.wait()

    def _take(self, task):
        batch, rest = [], collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if item.job.task == task and len(batch) < self.max_batch_size:
                if not item.job.cancelled:  # else its request gave up
                    batch.append(item)
            else:
                rest.append(item)
        self._queue = rest
        if rest:  # another replica may start on what is left
            self._cond.notify()
        return batch

    def _run(self, index):
        try:
            model = self._load(self.threads)
            self._warm_up(model)
        except BaseException as exc:  # noqa: BLE001 - any failure to load is reported, never silent
            self.failed = f"replica {index} could not load the model: {type(exc).__name__}: {exc}"
            log.error("%s", self.failed)
            return
        self._warm[index] = True
        log.info("replica %d ready (%d threads)", index, self.threads)
        batch = []
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._execute(model, batch)
        except BaseException as exc:  # noqa: BLE001 - a dead replica must show in readiness, and its requests fail
            self.failed = f"replica {index} died: {type(exc).__name__}: {exc}"
            log.error("%s", self.failed)
            error = RuntimeError(self.failed)
            self._settle([(item, error, True) for item in batch or [] if item.job.results[item.index] is None])

    def _warm_up(self, model):
        """One forward per task at batch 1 and at max_batch_size (allocates their buffers), and learn what to
        advertise: the embedding width and the labels."""
        gray = np.full((8, 8, 3), 128, np.uint8)
        one = model.image_processor(gray)["pixel_values"]
        for n in sorted({1, self.max_batch_size}):
            pixels = np.repeat(one, n, axis=0)
            dim = np.asarray(model.embed(pixels)).shape[-1]
            if can_classify(model):
                model.classify(pixels, top_k=1)
            if can_zero_shot(model):
                model.embed_text(["a photo of a cat."] * n)
        if self.info is None:
            labels = getattr(model.config, "id2label", None) or {}
            self.info = {"embedding_dim": int(dim), "can_classify": can_classify(model),
                         "num_labels": len(labels) if can_classify(model) else 0, "zero_shot": can_zero_shot(model)}
            self.rank_labels = model.rank_labels if can_zero_shot(model) else None
            self.processor = model.image_processor

    def _execute(self, model, batch):
        started = time.perf_counter()
        settled = []  # (item, result or exception, failed)
        batch = self._prepare(model, batch, settled)
        if not batch:
            self._settle(settled)
            return
        try:
            inputs = [item.pixels for item in batch]
            task = batch[0].job.task
            if task == CLASSIFY:
                top_k = max(item.job.top_k for item in batch)
                ranked = model.classify(np.stack(inputs), top_k=top_k)
                settled += [(item, r[:item.job.top_k], False) for r, item in zip(ranked, batch)]
            else:
                rows = model.embed_text(inputs) if task == EMBED_TEXT else model.embed(np.stack(inputs))
                rows = np.array(rows, dtype=np.float32)  # a copy: the model may reuse its output buffer
                settled += [(item, row, False) for item, row in zip(batch, rows)]
        except Exception as exc:  # noqa: BLE001 - this batch fails (500), the replica goes on
            log.exception("batch of %d failed", len(batch))
            self._settle(settled + [(item, exc, True) for item in batch])
            return
        except BaseException:  # the replica dies (_run answers the batch): the images that failed alone first
            self._settle(settled)
            raise
        done = time.perf_counter()
        if self.metrics is not None:
            self.metrics.batch(len(batch), [started - item.job.enqueued for item in batch], done - started)
        self._settle(settled)

    def _settle(self, settled):
        """Store each item's result in its job; wake each waker once for the jobs this completed."""
        finished = []
        with self._cond:
            for item, result, failed in settled:
                job = item.job
                job.results[item.index], job.failed[item.index] = result, failed
                job.left -= 1
                if job.left == 0 and not job.cancelled:
                    self._open_jobs -= job.counted
                    finished.append(job)
        wakers = {}
        for job in finished:
            if job.waker is None:
                job._event.set()
            else:
                wakers.setdefault(job.waker, []).append(job)
        for waker, jobs in wakers.items():
            waker(jobs)

    @staticmethod
    def _prepare(model, batch, settled):
        """Decode each item that has a prepare, preprocess the decoded ones in one call (one by one when that
        fails, to find the culprit); the items still alive. A failed item goes to `settled` with its error."""
        def fail(item, exc):
            refuse = getattr(item.job.prepare, "refuse", None)
            settled.append((item, refuse(item.index, exc) if refuse is not None else exc, True))

        if not any(item.job.prepare is not None for item in batch):
            return batch
        decoded, live = [], []
        for item in batch:
            if item.job.prepare is not None:
                try:
                    item.pixels = item.job.prepare(item.index, item.pixels)
                except Exception as exc:  # noqa: BLE001 - this image's request answers it (400 / 500)
                    fail(item, exc)
                    continue
                decoded.append(item)
            live.append(item)
        if not decoded:
            return live
        process = model.image_processor
        try:
            pixels = process([item.pixels for item in decoded], num_workers=1)["pixel_values"]
        except Exception:  # noqa: BLE001 - one image cannot be preprocessed: find which, the rest go on
            pixels = []
            for item in decoded:
                try:
                    pixels.append(process(item.pixels, num_workers=1)["pixel_values"][0])
                except Exception as exc:  # noqa: BLE001
                    fail(item, exc)
                    pixels.append(None)
        for item, p in zip(decoded, pixels):
            item.pixels = p
        return [item for item in live if item.pixels is not None]
