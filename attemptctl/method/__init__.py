"""The method: soft prompts, the attention module G, the mixture, the LM wrapper, backbones, variants."""
