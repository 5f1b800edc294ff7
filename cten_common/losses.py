"""Loss weights of the reference's training (numpy; both frameworks apply them).

PCCE ("polarity-consistent cross-entropy", VideoEmotion-8): a sample whose
predicted class has the opposite polarity of its label weighs 1 + lambda.
"""
import numpy as np

LOSSES = ("ce", "pcce")      # train.loss: cross-entropy, or PCCE-weighted cross-entropy

POSITIVE = {"Anticipation", "Joy", "Surprise", "Trust", "joy", "surprise", "Happy"}
NEGATIVE = {"Anger", "Disgust", "Fear", "Sadness", "anger", "disgust", "fear", "sadness",
            "Sad"}


def polarity(class_names):
    """+1 / -1 / 0 (neutral or unknown) per class."""
    return np.array([1 if c in POSITIVE else -1 if c in NEGATIVE else 0 for c in class_names])


def pcce_weights(logits, labels, class_names, lam=0.5):
    """float32 [B]: 1 + lam where the prediction's polarity opposes the label's, else 1."""
    pol = polarity(class_names)
    pred = np.asarray(logits).argmax(axis=1)
    flip = pol[pred] * pol[np.asarray(labels)] < 0
    return (1.0 + lam * flip).astype(np.float32)
