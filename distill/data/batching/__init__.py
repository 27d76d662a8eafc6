"""How records become batches: encoding, the LightningDataModule and its samplers."""
