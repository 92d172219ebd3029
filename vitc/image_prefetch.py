"""Image files decoded and preprocessed on a background thread, ahead of the forward that consumes them.

Why: for a folder of photos a CLI command spends a fifth of its time in Pillow (decode, resize) and the
image processor. One thread doing that ahead of the forward overlaps it with the model load (a single-threaded
read and pack: a core is free) and with the forward itself (the GEMMs run with the GIL released and take their
tiles from a dynamic queue, so a core shared with the decoder is not a straggler). Batches come out in order,
split as `decode_chunk` splits them, so every image gets the same pixels and the same batch as without the
thread; at most `ahead_bytes` of pixel arrays wait at any time.
"""
import collections
import threading

import numpy as np

# what makes one file a reported failure instead of an error of the whole run
IMAGE_ERRORS = (OSError, ValueError)


def decode_chunk(processor, paths, keep_images=False):
    """(good paths, pixel_values [len(good), C, H, W] or None, failures [(path, message)], decoded PIL images if
    keep_images else None) of some image files, decoded one by one so that one bad file does not sink the rest."""
    from .image_io import ImageLoadError, load_image
    good, arrays, images, failures = [], [], [], []
    for path in paths:
        try:
            image = load_image(path) if keep_images else path
            arrays.append(processor(image)["pixel_values"][0])
            good.append(path)
            images.append(image)
        except (ImageLoadError,) + IMAGE_ERRORS as exc:
            failures.append((path, str(exc)))
    return good, np.stack(arrays) if arrays else None, failures, images if keep_images else None


class ImagePrefetch:
    """Iterate over (chunk, good paths, pixel_values or None, failures) for paths[i:i + batch_size], in order,
    each made by decode_chunk on a daemon thread started here. Use as a context manager (or call close()):
    leaving early stops the thread. An unexpected error in the thread is raised by the iteration, after the
    batches made before it."""

    def __init__(self, processor, paths, batch_size, ahead_bytes=64 << 20):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.processor = processor
        self._chunks = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
        self._ahead = ahead_bytes
        self._ready = collections.deque()
        self._held = 0  # bytes of pixels made and not taken yet
        self._error = None
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="vitc-image-prefetch", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for chunk in self._chunks:
                good, pixels, failures, _ = decode_chunk(self.processor, chunk)
                size = 0 if pixels is None else pixels.nbytes
                with self._cond:
                    # one batch may always wait, so a batch larger than the budget still moves
                    while not self._stop and self._held and self._held + size > self._ahead:
                        self._cond.wait()
                    if self._stop:
                        return
                    self._ready.append((chunk, good, pixels, failures))
                    self._held += size
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, raised there
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def __len__(self):
        return len(self._chunks)

    def __iter__(self):
        for _ in self._chunks:
            with self._cond:
                while not self._ready and self._error is None:
                    self._cond.wait()
                if not self._ready:
                    raise self._error
                item = self._ready.popleft()
                self._held -= 0 if item[2] is None else item[2].nbytes
                self._cond.notify_all()
            yield item

    def close(self):
        with self._cond:
            self._stop = True
            self._ready.clear()
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
