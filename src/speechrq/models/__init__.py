"""Speech encoders: a convolutional front end and Conformer blocks, built by factories."""

from .conformer import PRESETS, ConformerBlock, ConformerEncoder, ConvSubsampling, EncoderConfig, SpeechEncoder, speech_encoder

__all__ = ["PRESETS", "ConformerBlock", "ConformerEncoder", "ConvSubsampling", "EncoderConfig", "SpeechEncoder", "speech_encoder"]
