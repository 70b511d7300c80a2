"""Both caches of frozen PPM outputs, computed offline by Beam so no model trains through them:

- ``item_vectors`` (level 1): the frozen modal encoders' vector m_i per catalogue item;
- ``user_states`` (level 2): the frozen PPM user tower's states H_u joined into the examples.
"""
