"""How a layer's output becomes one row per example (torch-free, so that ExtractConfig checks it without torch)."""

POOLS = {
    "avg": "global average over space (N, C, H, W) or over tokens (N, T, D)",
    "max": "global max over space or tokens",
    "cls": "first token of (N, T, D) outputs",
}
