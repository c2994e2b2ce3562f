import pandapower.networks as pn
net = pn.case33bw()
