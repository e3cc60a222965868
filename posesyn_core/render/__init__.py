"""CPU rendering of posed body meshes (pyrender + OSMesa) into labelled, person-centred crops."""
