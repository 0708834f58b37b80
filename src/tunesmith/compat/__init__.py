"""Every place tunesmith changes a third-party library at run time, one module each.

- `environment`: start-up settings and shims (bitsandbytes notices and its 4-bit CPU repack, Hub kernels off,
  oneDNN's kernel cache); run by `tunesmith/__init__` before anything imports peft.
- `attention`: transformers' attention registry gets a CPU causal attention for training (`train.attention`).
- `fused`: compiled RMSNorm, rotary, gated-MLP and LoRA kernels while training (`train.fused_ops`).
- `peft_casts`: PEFT's fp32 cast of adapter inputs switched off under bf16 autocast.

Each patch states the library versions it was checked on (`CHECKED_ON`), counts the calls that reach it or
verifies that the library still honours it, and undoes itself safely (`patches`). Import-light: importing this
package imports none of its modules.
"""
