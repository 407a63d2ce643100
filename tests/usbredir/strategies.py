"""Hypothesis strategies for usbredir packets that a sender may send under given forms."""

from __future__ import annotations

from hypothesis import strategies as st

from usbip_gadget.usbredir import (
    ENDPOINTS,
    AllocBulkStreams,
    AltSettingStatus,
    BufferedBulkPacket,
    BulkPacket,
    BulkReceivingStatus,
    BulkStreamsStatus,
    CancelDataPacket,
    Cap,
    ConfigurationStatus,
    ControlPacket,
    DeviceConnect,
    DeviceDisconnect,
    DeviceDisconnectAck,
    EndpointEntry,
    EpInfo,
    FilterFilter,
    FilterReject,
    Forms,
    FreeBulkStreams,
    GetAltSetting,
    GetConfiguration,
    InterfaceEntry,
    InterfaceInfo,
    InterruptPacket,
    InterruptReceivingStatus,
    IsoPacket,
    IsoStreamStatus,
    Packet,
    Reset,
    Role,
    SetAltSetting,
    SetConfiguration,
    StartBulkReceiving,
    StartInterruptReceiving,
    StartIsoStream,
    StopBulkReceiving,
    StopInterruptReceiving,
    StopIsoStream,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
in_ep = st.integers(0x80, 0xFF)
caps = st.frozensets(st.sampled_from(list(Cap)))


def ids(forms: Forms) -> st.SearchStrategy[int]:
    return st.integers(0, 2**64 - 1) if forms.ids_64bit else u32


@st.composite
def _data_packet(draw: st.DrawFn, sender: Role, forms: Forms) -> Packet:
    kind = draw(st.sampled_from(["control", "bulk", "iso", "interrupt"]))
    endpoint = draw(st.sampled_from([0x00, 0x80]) if kind == "control" else u8)
    carries = bool(endpoint & 0x80) == (sender is Role.HOST)
    if kind == "iso" and not carries:
        endpoint ^= 0x80
        carries = True
    if kind == "interrupt" and sender is Role.GUEST and endpoint & 0x80:
        endpoint &= 0x7F
        carries = True
    top = (2**24 if forms.bulk_32bit else 0xFFFF) if kind == "bulk" else 0xFFFF
    length = draw(st.integers(0, min(top, 3000)) | st.integers(0, top))
    data = draw(st.binary(min_size=min(length, 3000), max_size=min(length, 3000)))
    if carries:
        length = len(data)
    else:
        data = b""
    status, packet_id = draw(u8), draw(ids(forms))
    if kind == "control":
        request, requesttype, value, index = draw(u8), draw(u8), draw(u16), draw(u16)
        return ControlPacket(endpoint, request, requesttype, status, value, index, length, data,
                             id=packet_id)  # fmt: skip
    if kind == "bulk":
        return BulkPacket(endpoint, status, length, draw(u32), data, id=packet_id)
    if kind == "iso":
        return IsoPacket(endpoint, status, length, data, id=packet_id)
    return InterruptPacket(endpoint, status, length, data, id=packet_id)


def _ep_entry(forms: Forms) -> st.SearchStrategy[EndpointEntry]:
    size = forms.ep_info_size()
    return st.builds(
        EndpointEntry, u8, u8, u8,
        u16 if size >= 160 else st.just(0), u32 if size == 288 else st.just(0),
    )  # fmt: skip


@st.composite
def packets(draw: st.DrawFn, sender: Role, forms: Forms) -> Packet:
    """Any packet ``sender`` may send under ``forms`` (a receiver with the same caps)."""
    i = draw(ids(forms))
    common = [_data_packet(sender, forms)]
    if Cap.FILTER in forms.peer and Cap.FILTER in forms.own:
        rules = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=60)
        common.append(st.builds(FilterFilter, rules, id=st.just(i)))
    if sender is Role.HOST:
        bcd = u16 if forms.both(Cap.CONNECT_DEVICE_VERSION) else st.none()
        entry = st.builds(InterfaceEntry, u8, u8, u8, u8)
        own = [
            st.builds(DeviceConnect, u8, u8, u8, u8, u16, u16, bcd, id=st.just(i)),
            st.just(DeviceDisconnect(id=i)),
            st.builds(InterfaceInfo, st.lists(entry, max_size=32).map(tuple), id=st.just(i)),
            st.builds(EpInfo, st.lists(_ep_entry(forms), min_size=ENDPOINTS,
                                       max_size=ENDPOINTS).map(tuple), id=st.just(i)),
            st.builds(ConfigurationStatus, u8, u8, id=st.just(i)),
            st.builds(AltSettingStatus, u8, u8, u8, id=st.just(i)),
            st.builds(IsoStreamStatus, u8, u8, id=st.just(i)),
            st.builds(InterruptReceivingStatus, u8, in_ep, id=st.just(i)),
            st.builds(BulkStreamsStatus, u32, u32, u8, id=st.just(i)),
        ]  # fmt: skip
        if forms.both(Cap.BULK_RECEIVING):
            data = st.binary(max_size=2000)
            own += [
                st.builds(BulkReceivingStatus, u32, in_ep, u8, id=st.just(i)),
                data.flatmap(lambda d: st.builds(
                    BufferedBulkPacket, u32, st.just(len(d)), in_ep, u8, st.just(d), id=st.just(i)
                )),
            ]  # fmt: skip
    else:
        own = [
            st.just(Reset(id=i)),
            st.builds(SetConfiguration, u8, id=st.just(i)),
            st.just(GetConfiguration(id=i)),
            st.builds(SetAltSetting, u8, u8, id=st.just(i)),
            st.builds(GetAltSetting, u8, id=st.just(i)),
            st.builds(StartIsoStream, u8, u8, u8, id=st.just(i)),
            st.builds(StopIsoStream, u8, id=st.just(i)),
            st.builds(StartInterruptReceiving, in_ep, id=st.just(i)),
            st.builds(StopInterruptReceiving, in_ep, id=st.just(i)),
            st.builds(AllocBulkStreams, u32, u32, id=st.just(i)),
            st.builds(FreeBulkStreams, u32, id=st.just(i)),
            st.just(CancelDataPacket(id=i)),
        ]
        if forms.both(Cap.FILTER):
            own.append(st.just(FilterReject(id=i)))
        if forms.both(Cap.DEVICE_DISCONNECT_ACK):
            own.append(st.just(DeviceDisconnectAck(id=i)))
        if forms.both(Cap.BULK_RECEIVING):
            transfer = st.integers(0, 128 * 1024 * 1024)
            own += [
                st.builds(StartBulkReceiving, u32, transfer, in_ep, u8, id=st.just(i)),
                st.builds(StopBulkReceiving, u32, in_ep, id=st.just(i)),
            ]
    packet: Packet = draw(st.one_of(*common, *own))
    return packet
