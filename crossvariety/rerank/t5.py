"""The mT5 re-ranker's forward pass: the encoder and the one decoder step that log P(yes) needs,
from a transformers T5/mT5 model's weights, written for speed.

The arithmetic is transformers' (equal in fp32 within 1e-5: tests/test_rerank.py); what differs
is how it is done:
- q, k and v in one matmul, and the gated feed-forward's wi_0 and wi_1 in one;
- self-attention with T5's relative position bias and the padding mask: ``flex`` is
  FlexAttention with the bias looked up inside the kernel (a ``score_mod``: no L x L tensor is
  ever written; under torch.compile it is one fused kernel), ``sdpa`` is torch's
  scaled_dot_product_attention with the bias + mask materialised once per batch (no compiler
  needed: the eager fallback and the CPU path);
- the decoder's cross-attention never computes the keys and values of the encoder states: with
  one query per pair, q . (W_k e) = (W_k^T q) . e and sum_l p_l W_v e_l = W_v (sum_l p_l e_l), so
  the 2 x 12 matmuls of (pairs x length) x 768 x 768 (a sixth of the re-ranker's work) become
  products with (pairs x 12) rows;
- the decoder's self-attention over its single position is its value projection (the softmax
  of one score is 1), and the 250k-word output layer is one direction: log P(yes) =
  logsigmoid(h . (w_yes - w_no)).
"""
import torch
import torch.nn.functional as F

ATTENTION = ("flex", "sdpa")
ACTIVATIONS = {"gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
               "gelu": F.gelu, "relu": F.relu}


def rms_norm(x, weight, eps):
    """T5's layer norm: no mean, no bias, the variance in fp32."""
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps)).to(weight.dtype)


def fused_linear(*linears):
    """One nn.Linear (no bias, as T5's) whose output is the given layers' outputs side by side."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    fused = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype,
                            device=weight.device)
    with torch.no_grad():
        fused.weight.copy_(weight)
    return fused


def copy_linear(linear):
    return fused_linear(linear)


class FeedForward(torch.nn.Module):
    def __init__(self, dense, activation, gated):
        super().__init__()
        self.gated = gated
        self.act = ACTIVATIONS[activation]
        self.wi = fused_linear(dense.wi_0, dense.wi_1) if gated else copy_linear(dense.wi)
        self.wo = copy_linear(dense.wo)

    def forward(self, x):
        if self.gated:
            gate, linear = self.wi(x).chunk(2, dim=-1)
            return self.wo(self.act(gate) * linear)
        return self.wo(self.act(self.wi(x)))


class EncoderLayer(torch.nn.Module):
    def __init__(self, block, activation, gated):
        super().__init__()
        attention, ff = block.layer[0], block.layer[1]
        self.attention_norm = torch.nn.Parameter(attention.layer_norm.weight.detach().clone())
        self.qkv = fused_linear(attention.SelfAttention.q, attention.SelfAttention.k,
                                attention.SelfAttention.v)
        self.o = copy_linear(attention.SelfAttention.o)
        self.ff_norm = torch.nn.Parameter(ff.layer_norm.weight.detach().clone())
        self.ff = FeedForward(ff.DenseReluDense, activation, gated)


class DecoderLayer(torch.nn.Module):
    def __init__(self, block, activation, gated, heads, d_kv):
        super().__init__()
        self_attention, cross, ff = block.layer[0], block.layer[1], block.layer[2]
        self.self_norm = torch.nn.Parameter(self_attention.layer_norm.weight.detach().clone())
        self.self_v = copy_linear(self_attention.SelfAttention.v)
        self.self_o = copy_linear(self_attention.SelfAttention.o)
        self.cross_norm = torch.nn.Parameter(cross.layer_norm.weight.detach().clone())
        self.cross_q = copy_linear(cross.EncDecAttention.q)
        d_model = cross.EncDecAttention.k.weight.shape[1]
        # (heads, d_kv, d_model): the rows of W_k and W_v that each head uses
        self.register_buffer("cross_k", cross.EncDecAttention.k.weight.detach()
                             .reshape(heads, d_kv, d_model).clone())
        self.register_buffer("cross_v", cross.EncDecAttention.v.weight.detach()
                             .reshape(heads, d_kv, d_model).clone())
        self.cross_o = copy_linear(cross.EncDecAttention.o)
        self.ff_norm = torch.nn.Parameter(ff.layer_norm.weight.detach().clone())
        self.ff = FeedForward(ff.DenseReluDense, activation, gated)


class MonoT5Forward(torch.nn.Module):
    """(input_ids [B, L], lengths [B], attention) -> logit(yes) - logit(no) [B] (float32), for
    token ids padded on the right; ``attention``: flex or sdpa (see the module's doc). ``direction`` is w_yes - w_no of the output layer (scaled as T5 scales
    a tied head's input)."""

    def __init__(self, seq2seq, direction, max_length=512):
        super().__init__()
        config = seq2seq.config
        activation = config.dense_act_fn
        if activation not in ACTIVATIONS:
            raise ValueError(f"{config.name_or_path}: activation {activation!r} is not one of "
                             f"{', '.join(ACTIVATIONS)}")
        gated = config.is_gated_act
        self.heads, self.d_kv, self.eps = config.num_heads, config.d_kv, config.layer_norm_epsilon
        self.max_length = max_length
        encoder, decoder = seq2seq.get_encoder(), seq2seq.get_decoder()
        self.embed = torch.nn.Embedding.from_pretrained(encoder.embed_tokens.weight.detach().clone())
        self.encoder_layers = torch.nn.ModuleList(
            EncoderLayer(block, activation, gated) for block in encoder.block)
        self.encoder_norm = torch.nn.Parameter(encoder.final_layer_norm.weight.detach().clone())
        # The encoder's relative position bias as a table over relative positions (key - query)
        # from -(max_length - 1) to max_length - 1: (heads, 2 * max_length - 1), in fp32.
        first = encoder.block[0].layer[0].SelfAttention
        relative = torch.arange(-(max_length - 1), max_length)
        buckets = first._relative_position_bucket(
            relative, bidirectional=True, num_buckets=first.relative_attention_num_buckets,
            max_distance=first.relative_attention_max_distance)
        self.register_buffer("bias_table", first.relative_attention_bias.weight.detach()[buckets]
                             .T.float().contiguous())
        start = decoder.embed_tokens.weight[config.decoder_start_token_id].detach()
        self.register_buffer("start", start.clone())
        self.decoder_layers = torch.nn.ModuleList(
            DecoderLayer(block, activation, gated, self.heads, self.d_kv) for block in decoder.block)
        self.decoder_norm = torch.nn.Parameter(decoder.final_layer_norm.weight.detach().clone())
        self.register_buffer("direction", direction.detach().float().clone())

    # ------------------------------------------------------------------------- encoder
    def relative_bias(self, length):
        """(heads, L, L) bias of query i for key j, in fp32."""
        positions = torch.arange(length, device=self.bias_table.device)
        return self.bias_table[:, positions[None, :] - positions[:, None] + self.max_length - 1]

    def self_attention(self, q, k, v, lengths, attention):
        """q, k, v [B, heads, L, d_kv]; keys at or beyond a row's length are masked."""
        if attention == "flex":
            from torch.nn.attention.flex_attention import flex_attention
            table, offset = self.bias_table, self.max_length - 1

            def t5_bias(score, b, h, q_idx, kv_idx):
                return torch.where(kv_idx < lengths[b], score + table[h, kv_idx - q_idx + offset],
                                   -float("inf"))
            return flex_attention(q, k, v, score_mod=t5_bias, scale=1.0)
        length = q.shape[2]
        padding = torch.arange(length, device=q.device)[None, :] >= lengths[:, None]
        mask = self.relative_bias(length).to(q.dtype)[None] \
            .masked_fill(padding[:, None, None, :], torch.finfo(q.dtype).min)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)

    def encode(self, input_ids, lengths, attention="sdpa"):
        if attention not in ATTENTION:
            raise ValueError(f"attention {attention!r}: choose {', '.join(ATTENTION)}")
        batch, length = input_ids.shape
        if length > self.max_length:
            raise ValueError(f"inputs of {length} tokens; at most {self.max_length}")
        x = self.embed(input_ids)
        for layer in self.encoder_layers:
            n = rms_norm(x, layer.attention_norm, self.eps)
            q, k, v = layer.qkv(n).view(batch, length, 3, self.heads, self.d_kv).permute(2, 0, 3, 1, 4)
            attended = self.self_attention(q, k, v, lengths, attention)
            x = x + layer.o(attended.transpose(1, 2).reshape(batch, length, -1))
            x = x + layer.ff(rms_norm(x, layer.ff_norm, self.eps))
        return rms_norm(x, self.encoder_norm, self.eps)

    # ------------------------------------------------------------------------- decoder
    def decode_first_step(self, encoded, lengths):
        """The decoder's state at its first step (the start token), [B, d_model]."""
        batch, length, _ = encoded.shape
        padding = torch.arange(length, device=encoded.device)[None, :] >= lengths[:, None]
        h = self.start.to(encoded.dtype).expand(batch, -1)
        for layer in self.decoder_layers:
            h = h + layer.self_o(layer.self_v(rms_norm(h, layer.self_norm, self.eps)))
            q = layer.cross_q(rms_norm(h, layer.cross_norm, self.eps)).view(batch, self.heads,
                                                                            self.d_kv)
            q_model = torch.einsum("bhd,hde->bhe", q, layer.cross_k)  # W_k^T q, per head
            scores = torch.bmm(q_model, encoded.transpose(1, 2))  # [B, heads, L]
            scores = scores.float().masked_fill(padding[:, None, :], -float("inf"))
            weights = torch.softmax(scores, dim=-1).to(encoded.dtype)
            context = torch.bmm(weights, encoded)  # [B, heads, d_model]
            attended = torch.einsum("bhe,hde->bhd", context, layer.cross_v).reshape(batch, -1)
            h = h + layer.cross_o(attended)
            h = h + layer.ff(rms_norm(h, layer.ff_norm, self.eps))
        return rms_norm(h, self.decoder_norm, self.eps)

    def forward(self, input_ids, lengths, attention="sdpa"):
        state = self.decode_first_step(self.encode(input_ids, lengths, attention), lengths)
        return state.float() @ self.direction
