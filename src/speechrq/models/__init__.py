"""Speech encoders: a convolutional front end and Conformer blocks, built by factories."""

from .conformer import (ENCODER_HOP, PRESETS, SUBSAMPLING, ConformerBlock, ConformerEncoder, ConvSubsampling, EncoderConfig,
                        SpeechEncoder, speech_encoder, trim_to_frames)

__all__ = ["ENCODER_HOP", "PRESETS", "SUBSAMPLING", "trim_to_frames", "ConformerBlock", "ConformerEncoder", "ConvSubsampling", "EncoderConfig", "SpeechEncoder", "speech_encoder"]
