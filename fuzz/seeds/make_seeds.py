#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (small valid files of each kind) into
fuzz/seeds/<target>/. Run with the dev venv (numpy, tifffile):

    .venv/bin/python fuzz/seeds/make_seeds.py
"""

import os
import struct
import zlib

import numpy as np
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))


def out(target, name):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


def png(path, img, bit_depth):
    h, w = img.shape
    raw = b"".join(b"\0" + (row.astype(">u2").tobytes() if bit_depth == 16 else row.astype("u1").tobytes())
                   for row in img)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def main():
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 255, (8, 8), dtype=np.uint8)
    u16 = rng.integers(0, 4095, (8, 8), dtype=np.uint16)
    t = "decode_tiff"
    tifffile.imwrite(out(t, "u8.tif"), u8)
    tifffile.imwrite(out(t, "u16.tif"), u16)
    tifffile.imwrite(out(t, "u16_deflate.tif"), u16, compression="zlib")
    tifffile.imwrite(out(t, "u16_be.tif"), u16, byteorder=">")
    tifffile.imwrite(out(t, "big.tif"), u16, bigtiff=True)
    tifffile.imwrite(out(t, "two_pages.tif"), np.stack([u16, u16 // 2]))
    tifffile.imwrite(out(t, "tiled.tif"), rng.integers(0, 4095, (32, 32), dtype=np.uint16),
                     tile=(16, 16))
    tifffile.imwrite(out(t, "f32.tif"), u16.astype(np.float32))
    tifffile.imwrite(out(t, "ome.ome.tif"), np.stack([u16, u16]), ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65,
                               "Channel": {"Name": ["DNA", "OCT4"]}})
    p = "decode_png"
    png(out(p, "u8.png"), u8, 8)
    png(out(p, "u16.png"), u16, 16)
    o = "ome_xml"
    with tifffile.TiffFile(out(t, "ome.ome.tif")) as f:
        xml = f.pages[0].description
    with open(out(o, "ome.xml"), "w") as f:
        f.write(xml)
    with open(out(o, "minimal.xml"), "w") as f:
        f.write('<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
                '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" '
                'SizeX="2" SizeY="2" SizeC="1" SizeZ="1" SizeT="1" PhysicalSizeX="0.5" '
                'PhysicalSizeY="0.5"><Channel ID="Channel:0:0" Name="DNA"/></Pixels></Image></OME>')
    with open(out("layout_csv", "layout.csv"), "w") as f:
        f.write("Metadata_Well,Metadata_Compound,Metadata_Concentration,Metadata_Role\n"
                "A01,DMSO,0,negative\nA02,CMPD-A,0.003,treated\nB01,BMP4,,positive\n")
    with open(out("layout_csv", "quoted.csv"), "w") as f:
        f.write('well;compound;dose\n"A1";"x, y";1e-3\n')
    names = {
        "imagexpress": "PLATE1_A01_s1_w1.tif",
        "imagexpress_z": "PLATE1_B12_s3_w2_z4.tif",
        "operetta": "r01c01f01p01-ch1sk1fk1fl1.tiff",
        "cellvoyager": "W0001F0001T0001Z001C1.tif",
        "incucyte": "VID123_A1_1_2023y01m02d_10h00m.tif",
    }
    for k, v in names.items():
        with open(out("file_names", k), "w") as f:
            f.write(v)
    with open(out("user_pattern", "named_groups"), "w") as f:
        f.write(r"^(?P<Plate>[^_]+)_(?P<Well>[A-P][0-9]{2})_s(?P<Site>\d+)_(?P<Channel>w\d)\.tif$"
                "\nP1_A01_s1_w1.tif")
    with open(out("user_pattern", "row_column"), "w") as f:
        f.write(r"r(?P<Row>\d+)c(?P<Column>\d+)f(?P<Site>\d+)-ch(?P<Channel>\d)\.tiff"
                "\nr01c02f03-ch1.tiff")
    with open(out("config_toml", "example.toml"), "w") as f:
        f.write('[channels]\nw1 = "DNA"\nw2 = "OCT4"\n\n[input]\nmax_pixels = 100000000\n\n'
                '[measure]\nfeatures = ["AreaShape", "Intensity"]\n')
    print("seeds written under", HERE)


if __name__ == "__main__":
    main()
