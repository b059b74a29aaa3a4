"""Polyp segmentation: a U-Net with the bundled EfficientNet-Lite0 encoder, trained and scored
per image (Dice, IoU, pixel precision and recall), for retrain's segmentation task."""
