"""Generators behind one interface: ``ddpm`` (class-conditional DDPM from scratch) and
``sd_lora`` (Stable Diffusion v1.x + LoRA). Load one with ``backends.load_generator`` and
call ``.sample(SampleRequest(...))``; ``backends.sample_to_pool`` stores the images with
their provenance."""
