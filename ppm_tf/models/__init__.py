"""The models: PPM (ID-free, pre-trained on the long span), IDRec (the ID-based base), and
the unified model (URM) that plugs PPM's head into IDRec."""
