"""Where a forward call's time goes: embeddings, each encoder-layer phase (timed in C), and the rest."""
import numpy as np

from ._vitc import LAYER_PHASES

# phases whose work is a linear-layer GEMM (with its fused epilogue)
LINEAR_PHASES = ("qkv", "proj", "fc1", "fc2")


class ForwardProfile:
    """Seconds per phase summed over the calls made while it was active (see model.profile())."""

    def __init__(self):
        self.layer_seconds = np.zeros(len(LAYER_PHASES))  # filled by the C layer, summed over layers
        self.seconds = {"embeddings": 0.0}
        self.total = 0.0
        self.calls = 0
        self.call_start = 0.0

    def add(self, phase, seconds):
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def end_call(self, seconds):
        self.total += seconds
        self.calls += 1

    def as_dict(self):
        """phase -> seconds; 'other' is the rest of the total (final LayerNorm, heads, Python)."""
        out = dict(self.seconds)
        out.update({name: float(t) for name, t in zip(LAYER_PHASES, self.layer_seconds)})
        out["other"] = max(0.0, self.total - sum(out.values()))
        return out

    def outside_linear_fraction(self):
        """Share of the forward time not spent in the linear layers' GEMMs (patch embedding counts as
        outside: it includes im2col)."""
        d = self.as_dict()
        linear = sum(d[p] for p in LINEAR_PHASES)
        return 1.0 - linear / self.total if self.total > 0 else 0.0

    def table(self):
        d = self.as_dict()
        lines = [f"{'phase':12s} {'ms/call':>9s} {'share':>7s}"]
        calls = max(self.calls, 1)
        for name, sec in d.items():
            share = sec / self.total if self.total > 0 else 0.0
            lines.append(f"{name:12s} {1e3 * sec / calls:9.2f} {share:7.1%}")
        lines.append(f"{'total':12s} {1e3 * self.total / calls:9.2f} {1:7.1%}")
        lines.append(f"outside the linear layers: {self.outside_linear_fraction():.1%}")
        return "\n".join(lines)
