"""fp8 matmuls for inference (opt-in: ``--dtype fp8``).

The linear layers of a model become float8 (e4m3) x float8 products: the weights quantised once
with a scale per output channel, the activations on the fly with a scale per row (token), the
products accumulated in fp32 and returned in bf16. On GPUs with fp8 tensor cores (compute
capability 8.9+: Ada, Hopper's H100/H200) ``torch._scaled_mm`` runs them at twice the bf16 rate;
elsewhere (a CPU, the tests) the same quantisation is emulated by a matmul of the dequantised
values, so that what fp8 does to scores can be measured and tested on any machine. Everything
else (norms, attention's softmax, the residual stream) stays in bf16.
"""
import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448
ROWS = 16  # _scaled_mm wants every dimension a multiple of 16


def supported(device):
    """Whether ``device`` has fp8 tensor cores."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_rows(x):
    """x (M, K) -> (float8 x8, fp32 scale (M, 1)) with x ~= x8 * scale, row by row."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class Float8Linear(torch.nn.Module):
    """A frozen nn.Linear whose product runs in fp8 (see the module's doc)."""

    def __init__(self, linear, emulate):
        super().__init__()
        weight8, scale = quantize_rows(linear.weight.detach())  # (out, in), one scale per out
        self.register_buffer("weight8", weight8)
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous())
        self.bias = linear.bias
        self.emulate = emulate
        # transformers' T5 casts its input to ``wo.weight.dtype`` when that is a tensor
        self.weight = None

    def forward(self, x):
        rows = x.reshape(-1, x.shape[-1])
        x8, x_scale = quantize_rows(rows)
        if self.emulate:
            y = (x8.float() * x_scale) @ (self.weight8.float() * self.weight_scale.T).T
        else:
            pad = -len(rows) % ROWS
            if pad:
                x8 = torch.cat([x8, x8.new_zeros((pad, x8.shape[1]))])
                x_scale = torch.cat([x_scale, x_scale.new_ones((pad, 1))])
            y = torch._scaled_mm(x8, self.weight8.T, scale_a=x_scale, scale_b=self.weight_scale,
                                 out_dtype=torch.bfloat16)[:len(rows)]
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


def convert(module, emulate=None):
    """Replace every nn.Linear inside ``module`` by a Float8Linear (emulated unless the
    weights sit on a GPU with fp8 tensor cores); returns how many were replaced."""
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            use_emulation = emulate if emulate is not None else not supported(child.weight.device)
            setattr(module, name, Float8Linear(child, use_emulation))
            replaced += 1
        else:
            replaced += convert(child, emulate)
    return replaced
